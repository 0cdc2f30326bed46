#!/usr/bin/env python3
"""Copies the vectors the subtensor crate's tests use out of the Python bittensor SDK's
`tests/fixtures/golden.json` (PyPI sdist bittensor==11.3.0, sha256
a74c2f7fd7d9c40ba8111170bf74dddfad57a040d181b3532acb2a9ce2ef2f11, Apache-2.0; recorded from a
live subtensor localnet, runtime spec 461).

    python3 scripts/extract_bittensor_golden.py ../shared/fixtures/bittensor-golden/golden.json

writes subtensor/tests/fixtures/golden_subset.json and metadata_v15.scale (the raw V15 metadata,
`meta` magic first, unwrapped from the recorded Option<OpaqueMetadata>).
"""
import hashlib
import json
import pathlib
import sys

SOURCE_SHA256 = "a74c2f7fd7d9c40ba8111170bf74dddfad57a040d181b3532acb2a9ce2ef2f11"


def compact_len(data: bytes):
    """Decodes a SCALE compact integer; returns (value, bytes used)."""
    mode = data[0] & 3
    if mode == 0:
        return data[0] >> 2, 1
    if mode == 1:
        return int.from_bytes(data[:2], "little") >> 2, 2
    if mode == 2:
        return int.from_bytes(data[:4], "little") >> 2, 4
    n = (data[0] >> 2) + 4
    return int.from_bytes(data[1 : 1 + n], "little"), 1 + n


def main() -> None:
    src = pathlib.Path(sys.argv[1])
    raw = src.read_bytes()
    if hashlib.sha256(raw).hexdigest() != SOURCE_SHA256:
        sys.exit(f"{src}: sha256 differs from the recorded {SOURCE_SHA256}")
    g = json.loads(raw)
    out = pathlib.Path(__file__).resolve().parent.parent / "subtensor/tests/fixtures"
    out.mkdir(parents=True, exist_ok=True)

    v15 = bytes.fromhex(g["metadata"]["v15_hex"].removeprefix("0x"))
    assert v15[0] == 1, "Option::Some"
    length, used = compact_len(v15[1:])
    body = v15[1 + used :]
    assert len(body) == length and body[:4] == b"meta", "OpaqueMetadata"
    (out / "metadata_v15.scale").write_bytes(body)

    pick = lambda items, **kv: [i for i in items if all(i.get(k) == v for k, v in kv.items())]
    subset = {
        "source": "PyPI sdist bittensor==11.3.0, tests/fixtures/golden.json (Apache-2.0)",
        "source_sha256": SOURCE_SHA256,
        "metadata_v15_sha256": hashlib.sha256(body).hexdigest(),
        "network": g["network"],
        "calls": pick(g["calls"], function="set_weights"),
        "storage_keys": [
            k
            for k in g["storage_keys"]
            if k["storage_function"] in ("Tempo", "Keys", "NetworksAdded", "BlocksSinceLastStep")
        ],
        "storage_values": [
            v for v in g["storage_values"] if v["storage_function"] in ("Tempo", "NetworksAdded")
        ],
        "runtime_calls": g["runtime_calls"],
        "signature_payloads": g["signature_payloads"],
        "extrinsics": g["extrinsics"],
        "ss58": g["ss58"],
        "events": g["events"],
    }
    (out / "golden_subset.json").write_text(json.dumps(subset, indent=1) + "\n")
    print(f"wrote {out}/golden_subset.json and metadata_v15.scale ({len(body)} bytes)")


if __name__ == "__main__":
    main()
