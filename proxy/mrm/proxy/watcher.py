"""Follows the registry's WatchDeployments stream and keeps the model table current.

Each update loads the version's ONNX model and input schema from the registry
(the bytes are checked against the sha256 the registry recorded) and swaps a
new table in; a stream that breaks is resumed with backoff. Readiness means:
the initial snapshot has been loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import grpc

from mrm.client.channel import open_aio_channel
from mrm.client.credentials import ClientAuth
from mrm.client.registry import RegistryClient
from mrm.core.errors import MrmError
from mrm.proxy.models import ModelTable, ServingModel, build
from mrm.v1 import registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)
_SERVED = (registry_pb2.STAGE_PRODUCTION, registry_pb2.STAGE_STAGING)


class DeploymentWatcher:
    def __init__(
        self,
        registry_target: str,
        *,
        threads: int,
        load_timeout: float,
        auth: ClientAuth | None = None,
    ) -> None:
        self.registry_target = registry_target
        self.auth = ClientAuth.from_env() if auth is None else auth
        self.threads = threads
        self.load_timeout = load_timeout
        self.table = ModelTable()
        self.ready = asyncio.Event()
        self._client = RegistryClient(registry_target, timeout=60.0, auth=self.auth)

    def close(self) -> None:
        self._client.close()

    def _load(self, v: registry_pb2.ModelVersion) -> ServingModel:
        by_role = {a.role: a.sha256 for a in v.artifacts}
        onnx_sha = by_role[registry_pb2.ARTIFACT_ROLE_ONNX_MODEL]
        onnx_bytes = self._client.download(onnx_sha)  # checked against its sha256
        schema = self._client.download(by_role[registry_pb2.ARTIFACT_ROLE_INPUT_SCHEMA])
        return build(
            v.model_name,
            v.version,
            registry_pb2.Stage.Name(v.stage).removeprefix("STAGE_"),
            v.sample_rate,
            onnx_bytes,
            onnx_sha,
            schema,
            threads=self.threads,
            load_timeout=self.load_timeout,
            strict=v.strict,
        )

    async def _apply(self, v: registry_pb2.ModelVersion) -> None:
        if v.stage not in _SERVED:
            self.table = self.table.without(v.model_name, v.version)
            log.info("unloaded %s %s", v.model_name, v.version)
            return
        try:
            model = await asyncio.to_thread(self._load, v)
        except (MrmError, KeyError, ValueError) as e:
            log.error("cannot serve %s %s: %s", v.model_name, v.version, e)
            return
        self.table = self.table.with_model(model)  # one assignment: the atomic swap
        log.info("serving %s %s (%s)", v.model_name, v.version, model.stage.lower())

    async def run(self, stopping: asyncio.Event) -> None:
        backoff = 0.2
        while not stopping.is_set():
            try:
                async with open_aio_channel(self.registry_target, self.auth) as channel:
                    stub = registry_pb2_grpc.RegistryServiceStub(channel)
                    stream = stub.WatchDeployments(
                        registry_pb2.WatchDeploymentsRequest(), metadata=self.auth.metadata()
                    )
                    stop_wait = asyncio.ensure_future(stopping.wait())
                    try:
                        await self._follow(stream, stop_wait)
                    finally:
                        stop_wait.cancel()
                        stream.cancel()
            except grpc.aio.AioRpcError as e:
                log.warning("deployment stream broke (%s); retrying in %.1fs", e.code(), backoff)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), backoff)
                backoff = min(backoff * 2, 10.0)

    async def _follow(
        self, stream: grpc.aio.UnaryStreamCall[Any, Any], stop_wait: asyncio.Future[Any]
    ) -> None:
        iterator = stream.__aiter__()
        while True:
            nxt = asyncio.ensure_future(iterator.__anext__())
            done, _ = await asyncio.wait({nxt, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            if stop_wait in done:
                nxt.cancel()
                return
            try:
                update = nxt.result()
            except StopAsyncIteration:
                return
            if update.snapshot_complete:
                self.ready.set()  # caught up with what the registry deploys
                continue
            await self._apply(update.version)
