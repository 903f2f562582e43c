"""What already held on the read side, kept tested: unsafe shard names in a manifest are
refused, credentials never appear in an error."""
from __future__ import annotations

import pytest
from read_sets import edit_manifest, pair_set

from loaders import make_loader
from shards import cli as shards_cli


@pytest.mark.parametrize("name", ["../../etc/passwd", "pipe:cat /etc/passwd", "/etc/passwd.tar",
                                  "s3://other/x.tar"])
def test_unsafe_shard_names_are_refused(tmp_path, name):
    root = pair_set(tmp_path)
    edit_manifest(root, lambda m: m["splits"]["train"]["shards"][0].update(name=name))
    with pytest.raises(ValueError, match="manifest"):
        make_loader(root, workers=0)


def test_credentials_never_appear_in_an_error(s3_server, capsys):
    bucket = s3_server.new_bucket("secret")
    code = shards_cli.main(["ls", f"s3://{bucket}/no-set-here"])
    out = capsys.readouterr()
    assert code == 2 and "no manifest" in out.err
    assert s3_server.env["AWS_SECRET_ACCESS_KEY"] not in out.out + out.err.replace(bucket, "")
