"""A model whose loading always fails, with a recognisable message in the log."""


def model_fn(model_dir):
    print("loading weights from", model_dir, flush=True)
    raise RuntimeError("weights file is corrupt: checksum mismatch")
