"""Multi-model test model "alpha": input_fn/predict_fn/output_fn style.

JSON body selects the answer (content type application/json):
- ``{"op": "who"}``     -> ``{"model": "alpha", "helper": <helper.NAME>, "dir": <model_dir>}``
- ``{"op": "alive"}``   -> how many AlphaModel objects exist in the process and which
                           ``sagehost_model_*`` handler modules are in sys.modules
- ``{"op": "gate", "started": <path>, "gate": <path>}``  create ``started``, wait (10 s at most)
                           for ``gate`` to exist, then answer ``{"gated": true}``
- ``{"op": "attrs"}``   echo the custom attributes back as ``seen=<value>``

Every model_fn call appends a line to ``<model_dir>/loads.log``; model_unload_fn appends one
to ``<model_dir>/unloads.log``.
"""

import gc
import json
import os
import sys
import time

import helper


class AlphaModel:
    def __init__(self, model_dir):
        self.model_dir = model_dir


def model_fn(model_dir):
    with open(os.path.join(model_dir, "loads.log"), "a") as log:
        log.write("load\n")
    return AlphaModel(model_dir)


def model_unload_fn(model, context):
    with open(os.path.join(model.model_dir, "unloads.log"), "a") as log:
        log.write(context.system_properties["model_dir"] + "\n")


def input_fn(data, content_type):
    return json.loads(data)


def predict_fn(request, model, context):
    op = request["op"]
    if op == "who":
        return {"model": "alpha", "helper": helper.NAME, "dir": model.model_dir}
    if op == "alive":
        gc.collect()
        live = sum(type(o).__name__ == "AlphaModel" for o in gc.get_objects())
        modules = sorted(n for n in sys.modules if n.startswith("sagehost_model_"))
        return {"alpha_models": live, "modules": modules, "helper_in_sys": "helper" in sys.modules}
    if op == "gate":
        open(request["started"], "w").close()
        deadline = time.monotonic() + 10
        while not os.path.exists(request["gate"]):
            if time.monotonic() > deadline:
                raise TimeoutError(request["gate"])
            time.sleep(0.005)
        return {"gated": True}
    if op == "attrs":
        context.set_custom_attributes(f"seen={context.custom_attributes}")
        return {"attrs": context.custom_attributes}
    raise ValueError(f"unknown op {op!r}")


def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
