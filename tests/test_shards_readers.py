"""Stock readers (webdataset, DALI) read our shards and see the same keys and bytes."""
import numpy as np
import pytest

from shards import manifest, openers, sampledata, schema, writer


def _shard_set(root, fmt, size=96, counts=(5, 4)):
    records, expected = [], {}
    start = 0
    for index, count in enumerate(counts):
        samples = sampledata.pair_samples(count, size, fmt, seed=index, start=start)
        start += count
        records.append(writer.write_shard(samples, root, "train", index))
        expected.update({s["__key__"]: s for s in samples})
    manifest.write_manifest(root, manifest.build_manifest(records, {"format": fmt}))
    return expected


@pytest.mark.parametrize("fmt", ["png", "raw"])
def test_stock_webdataset_reads_the_same_keys_and_bytes(tmp_path, fmt):
    wds = pytest.importorskip("webdataset")
    expected = _shard_set(tmp_path, fmt)
    urls = manifest.shard_urls(tmp_path, "train")
    seen = list(wds.WebDataset(urls, shardshuffle=False))
    assert [s["__key__"] for s in seen] == list(expected)
    for sample in seen:
        want = expected[sample["__key__"]]
        assert {k: sample[k] for k in want if k != "__key__"} == {k: v for k, v in want.items() if k != "__key__"}
        decoded = schema.decode_pair(sample)
        assert decoded.left.dtype == np.uint16
    # Brace patterns too.
    pattern = str(tmp_path / "train-{000000..000001}.tar")
    assert openers.expand_urls(pattern) == urls
    assert len(list(wds.WebDataset(pattern, shardshuffle=False))) == len(expected)


def dali_read(urls, index_urls, fmt, batch_size):
    """All samples through DALI's CPU webdataset reader: [(left bytes, right bytes, json bytes)]."""
    from nvidia.dali import fn, pipeline_def, types

    ext = ["left.png", "right.png", "json"] if fmt == "png" else ["left.u16", "right.u16", "json"]
    dtypes = [types.UINT8, types.UINT8, types.UINT8] if fmt == "png" else \
        [types.UINT16, types.UINT16, types.UINT8]

    @pipeline_def(batch_size=batch_size, num_threads=1, device_id=None)
    def pipe():
        return tuple(fn.readers.webdataset(paths=urls, index_paths=index_urls, ext=ext,
                                           dtypes=dtypes, missing_component_behavior="error",
                                           name="reader"))

    p = pipe()
    p.build()
    total = p.reader_meta("reader")["epoch_size"]
    out = []
    while len(out) < total:
        batches = p.run()
        for i in range(len(batches[0])):
            out.append(tuple(np.array(b.at(i)).tobytes() for b in batches))
    return out[:total]


@pytest.mark.parametrize("fmt", ["png", "raw"])
def test_dali_reads_with_our_index(tmp_path, fmt):
    pytest.importorskip("nvidia.dali")
    expected = _shard_set(tmp_path, fmt)
    urls = manifest.shard_urls(tmp_path, "train")
    got = dali_read(urls, manifest.index_urls(tmp_path, "train"), fmt, batch_size=3)
    ext = schema.EXTENSIONS[fmt]
    want = [(s[f"left.{ext}"], s[f"right.{ext}"], s["json"]) for s in expected.values()]
    assert got == want
    if fmt == "png":
        left = schema.decode_image(got[0][0], "png", 96)
        assert left.dtype == np.uint16 and left.max() > 255


def test_long_keys_read_by_webdataset_and_dali(tmp_path):
    """Keys longer than 100 characters (long study UIDs) use GNU long-name members."""
    pytest.importorskip("nvidia.dali")
    wds = pytest.importorskip("webdataset")
    key = schema.make_key("optimam", "1.2.826.0.1.3680043.9.3218." + "7" * 90, "MLO", "r010c004")
    image = sampledata.tissue_patch(np.random.default_rng(0), 96)
    samples = [schema.encode_pair(k, image, image, sampledata.pair_meta(96)) for k in (key, "short")]
    record = writer.write_shard(samples, tmp_path, "train", 0)
    tar, idx = str(tmp_path / record["name"]), str(tmp_path / record["index_name"])
    assert [s["__key__"] for s in wds.WebDataset([tar], shardshuffle=False)] == [key, "short"]
    got = dali_read([tar], [idx], "png", batch_size=2)
    assert got == [(s["left.png"], s["right.png"], s["json"]) for s in samples]
