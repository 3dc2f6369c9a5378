//! Responses kaos writes itself, valid for the request's API version: a Produce or Fetch answer
//! in which every partition the request named carries one error and no data.

use bytes::BytesMut;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, ProduceRequest, ProduceResponse, ResponseHeader,
};

use crate::wire::{CodecError, encode_frame};

/// A Produce response failing every partition of `request` with `error`.
pub fn failed_produce(
    request: &ProduceRequest,
    version: i16,
    correlation_id: i32,
    error: i16,
) -> Result<BytesMut, CodecError> {
    let responses = request
        .topic_data
        .iter()
        .map(|topic| {
            TopicProduceResponse::default()
                .with_name(topic.name.clone())
                .with_topic_id(topic.topic_id)
                .with_partition_responses(
                    topic
                        .partition_data
                        .iter()
                        .map(|partition| {
                            PartitionProduceResponse::default()
                                .with_index(partition.index)
                                .with_error_code(error)
                                .with_base_offset(-1)
                                .with_log_append_time_ms(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        })
        .collect();
    let response = ProduceResponse::default().with_responses(responses);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = ApiKey::Produce.response_header_version(version);
    encode_frame(ApiKey::Produce, &header, header_version, &response, version)
}

/// A Fetch response failing every partition of `request` with `error`. A request that names no
/// partition (an incremental fetch session with nothing new) gets the error at the top level.
pub fn failed_fetch(
    request: &FetchRequest,
    version: i16,
    correlation_id: i32,
    error: i16,
) -> Result<BytesMut, CodecError> {
    let responses: Vec<_> = request
        .topics
        .iter()
        .map(|topic| {
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|partition| {
                            PartitionData::default()
                                .with_partition_index(partition.partition)
                                .with_error_code(error)
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                                .with_preferred_read_replica(BrokerId(-1))
                        })
                        .collect(),
                )
        })
        .collect();
    let any_partition = responses.iter().any(|t: &FetchableTopicResponse| !t.partitions.is_empty());
    let mut response = FetchResponse::default().with_responses(responses);
    if !any_partition && version >= 7 {
        response.error_code = error;
    }
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = ApiKey::Fetch.response_header_version(version);
    encode_frame(ApiKey::Fetch, &header, header_version, &response, version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::TopicName;
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::protocol::{Decodable, StrBytes};

    fn decode<T: Decodable>(api: ApiKey, version: i16, frame: BytesMut) -> T {
        let mut body = frame.freeze().slice(4..);
        let header = ResponseHeader::decode(&mut body, api.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, 9);
        let message = T::decode(&mut body, version).unwrap();
        assert!(body.is_empty());
        message
    }

    #[test]
    fn failed_produce_is_valid_in_every_version() {
        let partitions =
            (0..3).map(|i| PartitionProduceData::default().with_index(i).with_records(Some(Bytes::new())));
        let topic = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("orders")))
            .with_partition_data(partitions.collect());
        let request = ProduceRequest::default().with_acks(-1).with_topic_data(vec![topic]);
        for version in 3..=13 {
            let mut request = request.clone();
            if version >= 13 {
                request.topic_data[0].name = TopicName::default();
            }
            let frame = failed_produce(&request, version, 9, 6).unwrap();
            let response: ProduceResponse = decode(ApiKey::Produce, version, frame);
            let partitions = &response.responses[0].partition_responses;
            assert_eq!(partitions.len(), 3, "v{version}");
            assert!(partitions.iter().all(|p| p.error_code == 6 && p.base_offset == -1));
        }
    }

    #[test]
    fn failed_fetch_is_valid_in_every_version() {
        let partition = FetchPartition::default().with_partition(2);
        let topic = FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("orders")))
            .with_partitions(vec![partition]);
        let request = FetchRequest::default().with_topics(vec![topic]);
        for version in 4..=17 {
            let frame = failed_fetch(&request, version, 9, 5).unwrap();
            let response: FetchResponse = decode(ApiKey::Fetch, version, frame);
            assert_eq!(response.responses[0].partitions[0].error_code, 5, "v{version}");
            assert_eq!(response.responses[0].partitions[0].partition_index, 2);
        }
        let empty = FetchRequest::default();
        let response: FetchResponse = decode(ApiKey::Fetch, 12, failed_fetch(&empty, 12, 9, 5).unwrap());
        assert_eq!(response.error_code, 5);
    }
}
