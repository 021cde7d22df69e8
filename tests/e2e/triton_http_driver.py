"""Runs Triton's own HTTP client (tritonclient.http), unchanged, in a process of its
own (it brings gevent). Usage:
    python -m tests.e2e.triton_http_driver ADDR MODEL INPUTS.npz OUTPUTS.npz TRACEPARENT
Infers twice, with the client's defaults (binary tensors) and with JSON tensors, and
writes the outputs of each, the health answers and the metadata to OUTPUTS.npz.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.http as triton  # type: ignore[import-untyped,unused-ignore]


def main(addr: str, model: str, inputs_path: str, outputs_path: str, traceparent: str) -> None:
    client = triton.InferenceServerClient(url=addr)
    health = {
        "live": client.is_server_live(),
        "ready": client.is_server_ready(),
        "model_ready": client.is_model_ready(model),
        "unknown_ready": client.is_model_ready("no-such-model"),
    }
    server = client.get_server_metadata()
    meta = client.get_model_metadata(model)
    data = np.load(inputs_path, allow_pickle=True)
    out: dict[str, np.ndarray] = {}
    responses = {}
    for binary in (True, False):
        inputs = []
        for spec in meta["inputs"]:
            array = data[spec["name"]]
            tensor = triton.InferInput(spec["name"], list(array.shape), spec["datatype"])
            tensor.set_data_from_numpy(array, binary_data=binary)
            inputs.append(tensor)
        wanted = [
            triton.InferRequestedOutput(o["name"], binary_data=binary) for o in meta["outputs"]
        ]
        result = client.infer(
            model,
            inputs,
            outputs=None if binary else wanted,  # the client's default: every output, binary
            request_id=f"rest-{'binary' if binary else 'json'}",
            parameters={"subject_id": "applicant-7"},
            headers={"traceparent": traceparent},
        )
        flavour = "binary" if binary else "json"
        for o in meta["outputs"]:
            out[f"{flavour}:{o['name']}"] = result.as_numpy(o["name"])
        responses[flavour] = result.get_response()
    meta_json = {"health": health, "server": server, "model": meta, "responses": responses}
    np.savez(outputs_path, **out, _meta=np.array(json.dumps(meta_json)))  # type: ignore[arg-type]


if __name__ == "__main__":
    main(*sys.argv[1:6])
