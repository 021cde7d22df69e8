"""Runs Triton's own client, unchanged, in a process of its own.

tritonclient and MRM's stubs both define the `inference.*` protobuf messages,
so they cannot share a process. Usage:
    python -m tests.e2e.triton_driver ADDR MODEL INPUTS.npz OUTPUTS.npz
Writes the outputs, plus the server and model metadata as JSON, to OUTPUTS.npz.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import tritonclient.grpc as triton  # type: ignore[import-untyped,unused-ignore]


def main(addr: str, model: str, inputs_path: str, outputs_path: str) -> None:
    client = triton.InferenceServerClient(url=addr)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(model)
    server = client.get_server_metadata(as_json=True)
    meta = client.get_model_metadata(model, as_json=True)
    data = np.load(inputs_path, allow_pickle=True)
    inputs = []
    for spec in meta["inputs"]:
        array = data[spec["name"]]
        tensor = triton.InferInput(spec["name"], list(array.shape), spec["datatype"])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = client.infer(model, inputs, parameters={"subject_id": "applicant-7"})
    out = {o["name"]: result.as_numpy(o["name"]) for o in meta["outputs"]}
    response = result.get_response(as_json=True)
    np.savez(
        outputs_path,
        **out,
        _meta=np.array(json.dumps({"server": server, "model": meta, "response": response})),
    )


if __name__ == "__main__":
    main(*sys.argv[1:5])
