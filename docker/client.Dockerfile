# The demo's client container: the Kafka console tools of the official image, plus curl.
FROM apache/kafka:4.1.0
USER 0
# hadolint ignore=DL3018
RUN apk add --no-cache curl
# appuser of the official image
USER 1000
