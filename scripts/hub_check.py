#!/usr/bin/env python3
"""Check that the official Python `huggingface_hub` client works against the local Hub server.

Starts the `hub-server` binary (murmuration-hub, feature `server`), then with
`huggingface_hub.HfApi(endpoint=...)`: create_repo(repo_type="dataset", private=True),
upload_file, repo_info, hf_hub_download at the returned commit, a second commit (the branch
moves, the old sha stays downloadable), update_repo_settings(private=False), and the private
repo's invisibility to another user. Exits non-zero on the first failed assertion.

Usage (not run by CI), from the repository root:

    python3 -m venv .venv-hub && .venv-hub/bin/pip install huggingface_hub
    cargo build -p murmuration-hub --features server --bin hub-server
    .venv-hub/bin/python scripts/hub_check.py target/debug/hub-server

Without an argument the binary is looked for in $CARGO_TARGET_DIR and ./target (debug, then
release). It prints `hub_check: OK (huggingface_hub VERSION)` when every check passes.
"""

import os
import subprocess
import sys
import tempfile


def find_binary():
    if len(sys.argv) > 1:
        return sys.argv[1]
    roots = [os.environ.get("CARGO_TARGET_DIR"), "target"]
    for root in filter(None, roots):
        for profile in ("debug", "release"):
            p = os.path.join(root, profile, "hub-server")
            if os.path.exists(p):
                return p
    sys.exit("hub-server binary not found; pass its path")


def main():
    binary = find_binary()
    alice, bob = "hf_alice_check_token", "hf_bob_check_token"
    proc = subprocess.Popen(
        [binary, "--user", f"alice:{alice}", "--user", f"bob:{bob}"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("HUB_URL="), f"unexpected first line {line!r}"
        url = line.split("=", 1)[1]
        run_checks(url, alice, bob)
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_checks(url, alice, bob):
    # Keep the user's token and cache out of it.
    os.environ.pop("HF_TOKEN", None)
    import huggingface_hub
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.utils import RepositoryNotFoundError

    print(f"huggingface_hub {huggingface_hub.__version__} against {url}")
    api = HfApi(endpoint=url, token=alice)
    repo = "alice/check"
    api.create_repo(repo, repo_type="dataset", private=True)
    api.create_repo(repo, repo_type="dataset", private=True, exist_ok=True)

    data1 = b'{"conversations":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}\n'
    data2 = data1 * 3
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "cache")
        c1 = api.upload_file(
            path_or_fileobj=data1, path_in_repo="data.jsonl", repo_id=repo, repo_type="dataset"
        )
        sha1 = c1.oid
        assert len(sha1) == 40, c1
        info = api.repo_info(repo, repo_type="dataset")
        assert info.sha == sha1, (info.sha, sha1)
        assert info.private is True, info.private
        assert "data.jsonl" in [s.rfilename for s in info.siblings], info.siblings

        p = hf_hub_download(
            repo, "data.jsonl", repo_type="dataset", revision=sha1,
            endpoint=url, token=alice, cache_dir=cache,
        )
        assert open(p, "rb").read() == data1
        assert os.path.join("datasets--alice--check", "snapshots", sha1) in p, p

        c2 = api.upload_file(
            path_or_fileobj=data2, path_in_repo="data.jsonl", repo_id=repo, repo_type="dataset"
        )
        sha2 = c2.oid
        assert sha2 != sha1
        assert api.repo_info(repo, repo_type="dataset").sha == sha2
        assert api.repo_info(repo, repo_type="dataset", revision=sha1).sha == sha1
        p_main = hf_hub_download(
            repo, "data.jsonl", repo_type="dataset", endpoint=url, token=alice, cache_dir=cache,
        )
        assert open(p_main, "rb").read() == data2
        ref = open(os.path.join(cache, "datasets--alice--check", "refs", "main")).read().strip()
        assert ref == sha2, (ref, sha2)
        p_old = hf_hub_download(
            repo, "data.jsonl", repo_type="dataset", revision=sha1,
            endpoint=url, token=alice, cache_dir=os.path.join(tmp, "cache2"),
        )
        assert open(p_old, "rb").read() == data1

        # Private: bob cannot see it.
        try:
            HfApi(endpoint=url, token=bob).repo_info(repo, repo_type="dataset")
            raise AssertionError("bob could read alice's private repo")
        except RepositoryNotFoundError:
            pass
        api.update_repo_settings(repo, repo_type="dataset", private=False)
        assert HfApi(endpoint=url, token=bob).repo_info(repo, repo_type="dataset").sha == sha2

        # A large file (announced like an LFS file) downloads intact.
        big = bytes(range(256)) * 8192
        api.upload_file(path_or_fileobj=big, path_in_repo="big.bin", repo_id=repo, repo_type="dataset")
        pb = hf_hub_download(repo, "big.bin", repo_type="dataset", endpoint=url, token=alice, cache_dir=cache)
        assert open(pb, "rb").read() == big
    print(f"hub_check: OK (huggingface_hub {huggingface_hub.__version__})")


if __name__ == "__main__":
    main()
