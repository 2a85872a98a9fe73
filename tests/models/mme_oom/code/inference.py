"""A model that never fits: model_fn raises MemoryError (multi-model load answers 507)."""


def model_fn(model_dir):
    raise MemoryError("needs 64 GiB, 1 GiB free")


def predict_fn(data, model):
    return data
