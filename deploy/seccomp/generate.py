#!/usr/bin/env python3
"""Writes kaos's seccomp profile: a container runtime's default profile plus the three io_uring
system calls glommio needs, and nothing else.

    python3 deploy/seccomp/generate.py [DEFAULT_PROFILE] > deploy/seccomp/kaos-seccomp.json

DEFAULT_PROFILE defaults to /usr/share/containers/seccomp.json, the default profile of podman
and CRI-O (Debian's golang-github-containers-common). It is the same family as Docker's and
containerd's defaults, which have refused io_uring since Docker 25 and containerd 1.7/2.0: every
runtime takes this file (`--security-opt seccomp=kaos-seccomp.json`, or a Localhost profile on
Kubernetes).
"""

import json
import sys

IO_URING = ["io_uring_enter", "io_uring_register", "io_uring_setup"]


def kaos_profile(default):
    profile = dict(default)
    kept = []
    for rule in default["syscalls"]:
        # A default that names io_uring (to refuse it, or to allow it) loses those names.
        names = [name for name in rule["names"] if name not in IO_URING]
        if names:
            kept.append({**rule, "names": names})
    kept.append({
        "names": IO_URING,
        "action": "SCMP_ACT_ALLOW",
        "comment": "kaos: glommio runs every shard on io_uring",
    })
    profile["syscalls"] = kept
    return profile


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/containers/seccomp.json"
    with open(path, encoding="utf-8") as f:
        default = json.load(f)
    json.dump(kaos_profile(default), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
