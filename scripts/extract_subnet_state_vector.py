#!/usr/bin/env python3
"""Extracts a recorded mainnet metagraph vector for `subtensor/tests/subnet_state.rs`.

Source: GitHub opentensor/bittensor (MIT), commit bb526e6d61210ef2ee0e229f63ca5518381ff5a7,
`tests/helpers/integration_websocket_data.py` (recorded mainnet websocket traffic, a Python
literal) and `tests/helpers/integration_websocket_at_version.txt` (the runtime's metadata, V15,
as the hex of the recorded `Option<OpaqueMetadata>`). Its `metagraph` scenario was recorded at
finney block 6 852 690, runtime spec 343, and holds the full responses of
`NeuronInfoRuntimeApi_get_neurons_lite(1)` and `SubnetInfoRuntimeApi_get_subnet_state(1)`
(and `get_selective_mechagraph`, used here only as a cross-check).

    python3 scripts/extract_subnet_state_vector.py /path/to/bittensor [COMMIT]

The path is a clone of opentensor/bittensor (a bare git dir works too; the files are read with
`git show COMMIT:path`). It writes, under `subtensor/tests/fixtures/mainnet343/`:

- `metadata_v15.scale`: the raw V15 metadata (`meta` magic first), unwrapped from the Option;
- `get_neurons_lite_1.scale`, `get_subnet_state_1.scale`: the raw response bytes;
- `expected.json`: figures and spot values computed here by this script's own SCALE decoder (a
  small reading of the metadata's type registry, independent of the Rust crates), which the
  Rust test checks its decoding against.

It checks on the way that every response decodes with 0 bytes left over, that the block hash
of the calls is the recorded hash of block 6 852 690, and that `get_selective_mechagraph` at the
same block carries the same hotkeys and stake vectors as `get_subnet_state`.
"""
import ast
import hashlib
import json
import pathlib
import subprocess
import sys

DEFAULT_COMMIT = "bb526e6d61210ef2ee0e229f63ca5518381ff5a7"
DATA_PATH = "tests/helpers/integration_websocket_data.py"
METADATA_PATH = "tests/helpers/integration_websocket_at_version.txt"
SCENARIO = "metagraph"
BLOCK = 6852690
SPEC = 343
NETUID = 1


# ---------------------------------------------------------------------------------------------
# SCALE reading


class Reader:
    """A cursor over SCALE bytes."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError(f"wanted {n} bytes at offset {self.pos}, {len(self.data)} in all")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def compact(self) -> int:
        first = self.data[self.pos]
        mode = first & 3
        if mode == 0:
            return self.uint(1) >> 2
        if mode == 1:
            return self.uint(2) >> 2
        if mode == 2:
            return self.uint(4) >> 2
        self.pos += 1
        return self.uint((first >> 2) + 4)

    def string(self) -> str:
        return self.take(self.compact()).decode("utf-8")

    def vec(self, item):
        return [item() for _ in range(self.compact())]

    def option(self, item):
        tag = self.u8()
        if tag == 0:
            return None
        if tag == 1:
            return item()
        raise ValueError(f"Option tag {tag} at offset {self.pos - 1}")

    def left(self) -> int:
        return len(self.data) - self.pos


# ---------------------------------------------------------------------------------------------
# Metadata V15: the type registry and the runtime APIs (scale-info / frame-metadata layouts)


def read_type(r: Reader) -> dict:
    path = r.vec(r.string)
    r.vec(lambda: (r.string(), r.option(r.compact)))  # type parameters
    kind = r.u8()
    if kind == 0:
        ty = {"kind": "composite", "fields": read_fields(r)}
    elif kind == 1:
        variants = r.vec(lambda: read_variant(r))
        ty = {"kind": "variant", "variants": {v["index"]: v for v in variants}}
    elif kind == 2:
        ty = {"kind": "sequence", "of": r.compact()}
    elif kind == 3:
        ty = {"kind": "array", "len": r.uint(4), "of": r.compact()}
    elif kind == 4:
        ty = {"kind": "tuple", "of": r.vec(r.compact)}
    elif kind == 5:
        ty = {"kind": "primitive", "prim": r.u8()}
    elif kind == 6:
        ty = {"kind": "compact", "of": r.compact()}
    elif kind == 7:
        ty = {"kind": "bitsequence", "store": r.compact(), "order": r.compact()}
    else:
        raise ValueError(f"unknown TypeDef {kind}")
    r.vec(r.string)  # docs
    ty["path"] = "::".join(path)
    return ty


def read_fields(r: Reader) -> list:
    def field():
        name = r.option(r.string)
        ty = r.compact()
        r.option(r.string)  # type name
        r.vec(r.string)  # docs
        return (name, ty)

    return r.vec(field)


def read_variant(r: Reader) -> dict:
    name = r.string()
    fields = read_fields(r)
    index = r.u8()
    r.vec(r.string)
    return {"name": name, "fields": fields, "index": index}


def skip_pallet(r: Reader) -> None:
    r.string()  # name

    def storage():
        r.string()  # prefix

        def entry():
            r.string()
            r.u8()  # modifier
            if r.u8() == 0:
                r.compact()
            else:
                r.vec(r.u8)  # hashers
                r.compact()
                r.compact()
            r.take(r.compact())  # default
            r.vec(r.string)

        r.vec(entry)

    r.option(storage)
    r.option(r.compact)  # calls
    r.option(r.compact)  # event

    def constant():
        r.string()
        r.compact()
        r.take(r.compact())
        r.vec(r.string)

    r.vec(constant)
    r.option(r.compact)  # error
    r.u8()  # index
    r.vec(r.string)


def read_metadata(raw: bytes):
    """Returns (types by id, {api: {method: output type id}}) of a V15 metadata blob."""
    r = Reader(raw)
    if r.take(4) != b"meta" or r.u8() != 15:
        raise ValueError("not V15 metadata")
    types = {}
    for _ in range(r.compact()):
        tid = r.compact()
        types[tid] = read_type(r)
    r.vec(lambda: skip_pallet(r))
    r.u8()  # extrinsic version
    for _ in range(4):
        r.compact()  # address, call, signature, extra
    r.vec(lambda: (r.string(), r.compact(), r.compact()))  # signed extensions
    r.compact()  # runtime type

    def api():
        name = r.string()

        def method():
            m = r.string()
            r.vec(lambda: (r.string(), r.compact()))
            out = r.compact()
            r.vec(r.string)
            return (m, out)

        methods = dict(r.vec(method))
        r.vec(r.string)
        return (name, methods)

    apis = dict(r.vec(api))
    return types, apis


# scale-info's TypeDefPrimitive: bool, char, str, u8 .. u256, i8 .. i256 (char and str apart).
PRIMITIVE_SIZES = {0: 1, 3: 1, 4: 2, 5: 4, 6: 8, 7: 16, 8: 32}
PRIMITIVE_SIZES.update({9: 1, 10: 2, 11: 4, 12: 8, 13: 16, 14: 32})


def decode(types: dict, tid: int, r: Reader):
    """Decodes one value of type `tid`: composites with named fields become dicts, newtypes their
    inner value, byte sequences and byte arrays `bytes`, Option None or the value."""
    ty = types[tid]
    kind = ty["kind"]
    if kind == "composite":
        fields = ty["fields"]
        if len(fields) == 1 and fields[0][0] is None:
            return decode(types, fields[0][1], r)
        if fields and all(name is not None for name, _ in fields):
            return {name: decode(types, f, r) for name, f in fields}
        return [decode(types, f, r) for _, f in fields]
    if kind == "variant":
        tag = r.u8()
        variant = ty["variants"].get(tag)
        if variant is None:
            raise ValueError(f"{ty['path']}: no variant {tag}")
        values = [decode(types, f, r) for _, f in variant["fields"]]
        if ty["path"] == "Option":
            return values[0] if values else None
        return {variant["name"]: values}
    if kind in ("sequence", "array"):
        n = r.compact() if kind == "sequence" else ty["len"]
        item = types[ty["of"]]
        if item["kind"] == "primitive" and item["prim"] == 3:
            return r.take(n)
        return [decode(types, ty["of"], r) for _ in range(n)]
    if kind == "tuple":
        return [decode(types, t, r) for t in ty["of"]]
    if kind == "primitive":
        prim = ty["prim"]
        if prim == 2:
            return r.string()
        if prim not in PRIMITIVE_SIZES:
            raise ValueError(f"primitive {prim} not handled")
        raw = r.take(PRIMITIVE_SIZES[prim])
        value = int.from_bytes(raw, "little", signed=prim >= 9)
        return bool(value) if prim == 0 else value
    if kind == "compact":
        return r.compact()
    raise ValueError(f"{kind} not handled")


def decode_all(types: dict, tid: int, raw: bytes, what: str):
    r = Reader(raw)
    value = decode(types, tid, r)
    if r.left():
        sys.exit(f"{what}: {r.left()} byte(s) left over after decoding")
    return value


# ---------------------------------------------------------------------------------------------
# The recording


def git_show(repo: str, commit: str, path: str) -> bytes:
    return subprocess.run(
        ["git", "-C", repo, "show", f"{commit}:{path}"], check=True, capture_output=True
    ).stdout


def scenario(source: bytes, name: str) -> dict:
    """`WEBSOCKET_RESPONSES[name]`, read as a literal (the file is Python, and other scenarios
    hold calls such as `cycle(...)`, so only this one entry is evaluated)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id == "WEBSOCKET_RESPONSES":
            for key, value in zip(node.value.keys, node.value.values):
                if ast.literal_eval(key) == name:
                    return ast.literal_eval(value)
    sys.exit(f"{DATA_PATH}: no scenario {name!r}")


def unhex(text: str) -> bytes:
    return bytes.fromhex(text.removeprefix("0x"))


def state_call(calls: dict, method: str, params: str, block_hash: str) -> bytes:
    key = json.dumps([method, params, block_hash])
    if key not in calls:
        sys.exit(f"{DATA_PATH}: no state_call {key}")
    return unhex(calls[key]["result"])


def main() -> None:
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    repo = sys.argv[1]
    commit = sys.argv[2] if len(sys.argv) == 3 else DEFAULT_COMMIT

    wrapped = unhex(git_show(repo, commit, METADATA_PATH).decode().strip())
    r = Reader(wrapped)
    if r.u8() != 1 or r.compact() != r.left():
        sys.exit(f"{METADATA_PATH}: not a Some(Vec<u8>) spanning the file")
    metadata = wrapped[r.pos :]
    types, apis = read_metadata(metadata)

    rec = scenario(git_show(repo, commit, DATA_PATH), SCENARIO)
    block_hash = rec["chain_getBlockHash"][f"[{BLOCK}]"]["result"]
    header = rec["chain_getHeader"][json.dumps([block_hash])]["result"]
    if int(header["number"], 16) != BLOCK:
        sys.exit(f"header of {block_hash} is block {int(header['number'], 16)}, not {BLOCK}")
    version = rec["state_getRuntimeVersion"][json.dumps([header["parentHash"]])]["result"]
    if version["specVersion"] != SPEC:
        sys.exit(f"runtime spec {version['specVersion']}, not {SPEC}")

    calls = rec["state_call"]
    netuid_param = NETUID.to_bytes(2, "little").hex()
    lite_raw = state_call(calls, "NeuronInfoRuntimeApi_get_neurons_lite", netuid_param, block_hash)
    state_raw = state_call(calls, "SubnetInfoRuntimeApi_get_subnet_state", netuid_param, block_hash)
    (mecha_key,) = [k for k in calls if "get_selective_mechagraph" in k]
    mecha_raw = unhex(calls[mecha_key]["result"])

    neurons = decode_all(
        types, apis["NeuronInfoRuntimeApi"]["get_neurons_lite"], lite_raw, "get_neurons_lite"
    )
    state = decode_all(
        types, apis["SubnetInfoRuntimeApi"]["get_subnet_state"], state_raw, "get_subnet_state"
    )
    mecha = decode_all(
        types,
        apis["SubnetInfoRuntimeApi"]["get_selective_mechagraph"],
        mecha_raw,
        "get_selective_mechagraph",
    )

    n = len(neurons)
    if [x["uid"] for x in neurons] != list(range(n)):
        sys.exit("get_neurons_lite: uids are not 0..n in order")
    for field in ("hotkeys", "alpha_stake", "tao_stake", "total_stake"):
        if len(state[field]) != n:
            sys.exit(f"get_subnet_state.{field}: {len(state[field])} entries for {n} neurons")
        if mecha[field] != state[field]:
            sys.exit(f"get_selective_mechagraph.{field} differs from get_subnet_state's")
    if [x["hotkey"] for x in neurons] != state["hotkeys"]:
        sys.exit("hotkeys differ between get_neurons_lite and get_subnet_state")

    lite = [sum(s for _, s in x["stake"]) for x in neurons]
    alpha, tao, total = state["alpha_stake"], state["tao_stake"], state["total_stake"]
    alpha_differs = [u for u in range(n) if alpha[u] != lite[u]]
    total_differs = [u for u in range(n) if total[u] != lite[u]]

    # total_stake = alpha_stake + tao_stake x TaoWeight, TaoWeight 0.18 as a 32-bit fraction.
    tao_weight_numerator = 773094113
    weighted = [u for u in range(n) if total[u] != alpha[u] + (tao[u] * tao_weight_numerator >> 32)]
    if weighted:
        sys.exit(f"total_stake != alpha + tao x 773094113/2^32 at uids {weighted}")

    def spot(uid: int) -> dict:
        return {
            "uid": uid,
            "hotkey": "0x" + neurons[uid]["hotkey"].hex(),
            "coldkey": "0x" + neurons[uid]["coldkey"].hex(),
            "stake_entries": len(neurons[uid]["stake"]),
            "lite_stake": lite[uid],
            "alpha_stake": alpha[uid],
            "tao_stake": tao[uid],
            "total_stake": total[uid],
        }

    top_total = max(range(n), key=lambda u: total[u])
    alpha_below_lite = [u for u in alpha_differs if alpha[u] < lite[u]]
    tao_only = [u for u in total_differs if alpha[u] == lite[u]]
    spots = [top_total, 0, n - 1] + alpha_below_lite + tao_only[:1]
    expected = {
        "source": {
            "repo": "opentensor/bittensor",
            "commit": commit,
            "files": [DATA_PATH, METADATA_PATH],
            "scenario": SCENARIO,
        },
        "block": BLOCK,
        "block_hash": block_hash,
        "spec_version": SPEC,
        "netuid": state["netuid"],
        "uids": n,
        "sha256": {
            "metadata_v15.scale": hashlib.sha256(metadata).hexdigest(),
            "get_neurons_lite_1.scale": hashlib.sha256(lite_raw).hexdigest(),
            "get_subnet_state_1.scale": hashlib.sha256(state_raw).hexdigest(),
        },
        "alpha_stake_differs_from_lite_stake": alpha_differs,
        "total_stake_differs_from_lite_stake": total_differs,
        "tao_stake_nonzero": sum(1 for t in tao if t),
        "lite_stake_entries_other_than_one": sum(1 for x in neurons if len(x["stake"]) != 1),
        "sum_lite_stake": sum(lite),
        "sum_alpha_stake": sum(alpha),
        "sum_tao_stake": sum(tao),
        "sum_total_stake": sum(total),
        "largest_total_stake_uid": top_total,
        "alpha_stake_below_lite_stake": alpha_below_lite,
        "spots": [spot(u) for u in dict.fromkeys(spots)],
    }

    out = pathlib.Path(__file__).resolve().parent.parent / "subtensor/tests/fixtures/mainnet343"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metadata_v15.scale").write_bytes(metadata)
    (out / "get_neurons_lite_1.scale").write_bytes(lite_raw)
    (out / "get_subnet_state_1.scale").write_bytes(state_raw)
    (out / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")
    print(
        f"block {BLOCK} spec {SPEC}: {n} uids; alpha_stake != lite stake for "
        f"{len(alpha_differs)}, total_stake != lite stake for {len(total_differs)}; "
        f"mechagraph agrees; wrote {out}"
    )


if __name__ == "__main__":
    main()
