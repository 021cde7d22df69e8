"""Send applications to the deployed model through MRM's inference proxy.

This is Triton's own Python client (`pip install "tritonclient[grpc]"`),
unchanged: the proxy speaks the Open Inference Protocol v2. Each request
carries the applicant's id as the `subject_id` parameter, so the decision can
be found again later (`mrmctl why --subject ID`); the proxy stores it only as a
keyed hash. Writes decisions.csv: applicant, decision, probability of default,
and the audit record id and trace id the proxy stamped on the response.

    python send_applications.py [--addr localhost:8001] [--model credit-risk]
        [--applications applications.csv] [--first 1] [--out decisions.csv]
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import tritonclient.grpc as triton  # type: ignore[import-untyped,unused-ignore]
from tritonclient.utils import (  # type: ignore[import-untyped,unused-ignore]
    InferenceServerException,
)

HERE = Path(__file__).parent


def request_inputs(meta: dict, row: pd.Series) -> list[triton.InferInput]:  # type: ignore[type-arg]
    """One tensor per model input, named and typed as the model's metadata says."""
    inputs = []
    for spec in meta["inputs"]:
        value = row[spec["name"]]
        if spec["datatype"] == "BYTES":
            array = np.array([[str(value).encode()]], dtype=object)
        else:
            array = np.array([[value]], dtype=np.float32)
        tensor = triton.InferInput(spec["name"], list(array.shape), spec["datatype"])
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addr", default="localhost:8001")
    parser.add_argument("--model", default="credit-risk")
    parser.add_argument("--applications", type=Path, default=HERE / "applications.csv")
    parser.add_argument("--out", type=Path, default=HERE / "decisions.csv")
    parser.add_argument(
        "--first", type=int, default=1, help="the number of the first applicant (applicant-N)"
    )
    args = parser.parse_args()

    client = triton.InferenceServerClient(url=args.addr)
    try:
        ready = client.is_model_ready(args.model)
    except InferenceServerException as exc:
        print(
            f"cannot reach the proxy at {args.addr} ({exc.status()}); is `mrm up` running?",
            file=sys.stderr,
        )
        return 3
    if not ready:
        print(f"model {args.model} is not ready at {args.addr}", file=sys.stderr)
        return 1
    meta = client.get_model_metadata(args.model, as_json=True)
    applications = pd.read_csv(args.applications)
    rejected = 0
    with args.out.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["applicant", "decision", "p_default", "version", "record_id", "trace_id"])
        for i, row in applications.iterrows():
            applicant = f"applicant-{int(i) + args.first:05d}"
            result = client.infer(
                args.model, request_inputs(meta, row), parameters={"subject_id": applicant}
            )
            response = result.get_response(as_json=True)
            params = {k: v["string_param"] for k, v in response.get("parameters", {}).items()}
            label = int(result.as_numpy("label").reshape(-1)[0])
            p_default = float(result.as_numpy("probabilities").reshape(-1, 2)[0, 1])
            decision = "rejected" if label == 1 else "approved"
            rejected += label == 1
            out.writerow(
                [
                    applicant,
                    decision,
                    f"{p_default:.4f}",
                    response["model_version"],
                    params.get("mrm_record_id", ""),
                    params.get("trace_id", ""),
                ]
            )
            if (int(i) + 1) % 500 == 0:
                print(f"  {int(i) + 1:>5} decisions ({rejected} rejected)", flush=True)
    print(f"sent {len(applications)} applications: {rejected} rejected; wrote {args.out.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
