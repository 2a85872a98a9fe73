"""Benchmark InvokeEndpointWithResponseStream: sagehost with SigV4 against the same container.

One streaming container (``bench/containers/stream_server.py``) is started; sagehost is started
and given an endpoint whose image is ``url:`` that container, so both paths end in the very
same process. Each run measures, direct then through sagehost:

- time to first event: sequential one-chunk streams on a keep-alive connection, timed from
  sending the request to the read that completes the first chunk (direct) or the first
  event-stream frame (sagehost);
- events per second: one long stream of small parts read as fast as a raw client can, counting
  chunks (direct) or frames by their prelude (sagehost), with every count checked;
- optionally, events per second as a boto3 user sees them (botocore decodes every event).

The clients are a blocking socket and httptools' parser: botocore costs more per event than
the thing being measured. The report gives the median of the runs. Usage::

    python bench/stream.py --runs 5
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httptools
from common import (  # bench/common.py; run as a script
    cpu_seconds,
    deploy_url,
    signed,
    start_container,
)

from sagehost.protocol import eventstream
from sagehost.testing.server import RunningServer, free_port

HERE = Path(__file__).resolve().parent
ENDPOINT = "stream"
_prelude = struct.Struct(">II").unpack_from


def start_stream_container(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    return start_container([sys.executable, str(HERE / "containers" / "stream_server.py")], tmp)


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stream_body(count: int, size: int) -> bytes:
    return json.dumps({"count": count, "size": size}).encode()


@dataclass(frozen=True)
class Target:
    """A path to the container: direct, or through sagehost with SigV4."""

    name: str
    url: str
    path: str
    frames: bool  # an event-stream body (sagehost) rather than raw chunks (direct)

    def request(self, body: bytes) -> bytes:
        """The raw request; through sagehost it is signed once here, for this body."""
        headers = {"Content-Type": "application/json"}
        if self.frames:
            headers = signed(self.url + self.path, body, headers)
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {urlsplit(self.url).netloc}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def direct(url: str) -> Target:
    return Target("direct", url, "/invocations", frames=False)


def via_sagehost(url: str) -> Target:
    return Target("sagehost", url, f"/endpoints/{ENDPOINT}/invocations-response-stream", True)


class Reader:
    """httptools callbacks for one response: counts chunks, or frames and their payload bytes.

    ``chunks`` are the sender's HTTP chunks (the terminating empty one excluded); ``events`` the
    complete event-stream frames, which may span chunks and are reassembled in ``pending``;
    ``short`` the events whose payload is not the ``size`` bytes of one container part.
    """

    def __init__(self, frames: bool, size: int) -> None:
        self.frames = frames
        self.size = size
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.done = False
        self.keep_alive = False
        self.chunks = -1
        self.body_bytes = 0
        self.events = 0
        self.short = 0
        self.payload_bytes = 0
        self.foreign = 0  # frames that are not PayloadPart events
        # Every PayloadPart carries the same header block: its length tells the event type.
        self.part_headers = _prelude(eventstream.payload_part(b""))[1]
        self.pending = bytearray()

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_chunk_complete(self) -> None:
        self.chunks += 1

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)
        if self.frames:
            self.pending += body

    def on_message_complete(self) -> None:
        self.done = True
        self.keep_alive = self.parser.should_keep_alive()

    def count_frames(self) -> None:
        pending = self.pending
        end = len(pending)
        offset = 0
        while end - offset >= 12:
            total, headers = _prelude(pending, offset)
            if end - offset < total:
                break
            if headers != self.part_headers:
                self.foreign += 1
            payload = total - headers - 16
            if payload != self.size:
                self.short += 1
            self.payload_bytes += payload
            self.events += 1
            offset += total
        del pending[:offset]

    def first_event(self) -> bool:
        return self.events > 0 if self.frames else self.chunks > 0


class RawClient:
    """One keep-alive HTTP/1.1 connection, blocking reads into one reused buffer."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.sock = self._connect()
        self.buffer = memoryview(bytearray(1 << 20))

    def _connect(self) -> socket.socket:
        parts = urlsplit(self.target.url)
        sock = socket.create_connection((parts.hostname, parts.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def warm(self, request: bytes, size: int) -> None:
        """A new connection and one untimed call: uvicorn drops connections idle for 5 s."""
        self.sock.close()
        self.sock = self._connect()
        self.exchange(request, size)

    def close(self) -> None:
        self.sock.close()

    def exchange(self, request: bytes, size: int) -> tuple[Reader, int, int]:
        """Send one request, read its whole response; returns the reader, the nanoseconds to
        the read that completed the first event, and the nanoseconds to the end."""
        reader = Reader(self.target.frames, size)
        feed, recv_into, buffer, clock = (
            reader.parser.feed_data,
            self.sock.recv_into,
            self.buffer,
            time.perf_counter_ns,
        )
        first = 0
        start = clock()
        self.sock.sendall(request)
        while not reader.done:
            size = recv_into(buffer)
            now = clock()
            if size == 0:
                raise ConnectionError(f"{self.target.name} closed the connection mid-response")
            feed(buffer[:size])
            if reader.frames:
                reader.count_frames()
            if not first and reader.first_event():
                first = now - start
        end = clock() - start
        if reader.status != 200 or not reader.keep_alive:
            raise RuntimeError(f"{self.target.name}: status {reader.status}, keep-alive lost")
        return reader, first, end


def ttft(
    client: RawClient, request: bytes, size: int, calls: int, pids: dict[str, int]
) -> dict[str, float]:
    samples = []
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    for _ in range(calls):
        reader, first, _ = client.exchange(request, size)
        if not reader.first_event():
            raise RuntimeError(f"{client.target.name}: a one-chunk stream carried no event")
        samples.append(first / 1e6)
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    samples.sort()
    result = {
        "p50_ms": statistics.median(samples),
        "p90_ms": samples[int(0.9 * len(samples))],
        "p99_ms": samples[int(0.99 * len(samples))],
    }
    for name in pids:
        result[f"{name}_cpu_us"] = 1e6 * (after[name] - before[name]) / calls
    return result


def events_per_second(
    client: RawClient, request: bytes, parts: int, size: int, pids: dict[str, int]
) -> dict[str, float]:
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    mine = own_cpu_seconds()
    reader, _, elapsed_ns = client.exchange(request, size)
    mine = own_cpu_seconds() - mine
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    if reader.frames:
        if reader.pending or reader.foreign:
            raise RuntimeError(
                f"{reader.foreign} foreign frames, {len(reader.pending)} stray bytes"
            )
        if reader.payload_bytes != parts * size:
            raise RuntimeError(f"payload: {reader.payload_bytes} bytes, sent {parts * size}")
        # sagehost relays what each read from the container brings: a part that straddles
        # two reads arrives as two short events. Every other event must be one whole part.
        events = reader.events
        if reader.short != 2 * (events - parts):
            raise RuntimeError(f"{events} events for {parts} parts, {reader.short} short")
    else:
        if reader.body_bytes != parts * size:
            raise RuntimeError(f"body: {reader.body_bytes} bytes, sent {parts * size}")
        events = reader.chunks
        if events != parts:
            raise RuntimeError(f"{events} chunks, the container sent {parts}")
    # Rates are per container part, so a split part does not count twice.
    result = {
        "events_s": parts / (elapsed_ns / 1e9),
        "split": events - parts,
        "client_cpu_us": 1e6 * mine / parts,
    }
    for name in pids:
        result[f"{name}_cpu_us"] = 1e6 * (after[name] - before[name]) / parts
    return result


def botocore_events_per_second(server: RunningServer, parts: int, size: int) -> dict[str, float]:
    runtime = server.client("sagemaker-runtime")
    start = time.perf_counter()
    reply = runtime.invoke_endpoint_with_response_stream(
        EndpointName=ENDPOINT, Body=stream_body(parts, size), ContentType="application/json"
    )
    events = payload = short = 0
    for event in reply["Body"]:
        part = len(event["PayloadPart"]["Bytes"])
        payload += part
        short += part != size
        events += 1
    elapsed = time.perf_counter() - start
    if payload != parts * size or short != 2 * (events - parts):
        raise RuntimeError(f"botocore: {events} events, {short} short, {payload} bytes")
    return {"events_s": parts / elapsed, "split": events - parts}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=300, help="one-chunk streams per TTFT run")
    parser.add_argument("--parts", type=int, default=200_000, help="parts in the long stream")
    parser.add_argument("--size", type=int, default=16, help="bytes per part")
    parser.add_argument(
        "--boto-parts", type=int, default=20_000, help="parts for the botocore row; 0 skips it"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        container, container_url = start_stream_container(tmp)
        server = RunningServer(
            data_dir=tmp / "data", port=free_port(), args=["--log-level", "warning"]
        )
        server.start()
        assert server.process is not None
        try:
            deploy_url(server.client("sagemaker"), ENDPOINT, {"Image": f"url:{container_url}"})
            run(args, server, container, container_url)
        except BaseException:
            print(f"container exit: {container.poll()}, sagehost exit: {server.process.poll()}")
            print("container log:", (tmp / "container.log").read_text()[-3000:], sep="\n")
            print("sagehost log:", server.log_text()[-3000:], sep="\n")
            raise
        finally:
            server.stop()
            container.terminate()
            container.wait()


def run(
    args: argparse.Namespace,
    server: RunningServer,
    container: subprocess.Popen[bytes],
    container_url: str,
) -> None:
    assert server.process is not None
    one, many = stream_body(1, args.size), stream_body(args.parts, args.size)
    paths = []
    for target in (direct(container_url), via_sagehost(server.url)):
        paths.append((RawClient(target), target.request(one), target.request(many)))
    pids = {"sagehost": server.process.pid, "container": container.pid}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    try:
        for client, request_one, _ in paths:  # warm both connections and the container pool
            ttft(client, request_one, args.size, 50, pids)
            client.exchange(client.target.request(stream_body(1000, args.size)), args.size)
        for _ in range(args.runs):
            for client, request_one, _ in paths:
                client.warm(request_one, args.size)
                results.setdefault(("ttft", client.target.name), []).append(
                    ttft(client, request_one, args.size, args.calls, pids)
                )
            for client, request_one, request_many in paths:
                client.warm(request_one, args.size)
                results.setdefault(("events", client.target.name), []).append(
                    events_per_second(client, request_many, args.parts, args.size, pids)
                )
            if args.boto_parts:
                results.setdefault(("events", "botocore"), []).append(
                    botocore_events_per_second(server, args.boto_parts, args.size)
                )
    finally:
        for client, _, _ in paths:
            client.close()
    report(results, args)


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def report(
    results: dict[tuple[str, str], list[dict[str, float]]], args: argparse.Namespace
) -> None:
    print(f"median of {args.runs} runs")
    print(f"time to first event, {args.calls} sequential one-chunk streams per run:")
    print("path          p50 ms   p90 ms   p99 ms  sagehost CPU/call  container CPU/call")
    for name in ("direct", "sagehost"):
        med = _medians(results[("ttft", name)])
        print(
            f"{name:<10}{med['p50_ms']:>10.3f}{med['p90_ms']:>9.3f}{med['p99_ms']:>9.3f}"
            f"{med['sagehost_cpu_us']:>16.0f} us{med['container_cpu_us']:>17.0f} us"
        )
    pairs = zip(results[("ttft", "sagehost")], results[("ttft", "direct")], strict=True)
    added = statistics.median(s["p50_ms"] - d["p50_ms"] for s, d in pairs)
    print(f"added p50 time to first event: {added:.3f} ms (median of paired runs)")
    print(f"events/s, one stream of {args.parts} parts of {args.size} bytes:")
    print("(parts/s; split = parts that straddled two reads and arrived as two events)")
    print("path         parts/s  split  sagehost CPU/part  container CPU/part  client CPU/part")
    for name in ("direct", "sagehost"):
        med = _medians(results[("events", name)])
        print(
            f"{name:<10}{med['events_s']:>10,.0f}{med['split']:>7.0f}"
            f"{med['sagehost_cpu_us']:>16.2f} us{med['container_cpu_us']:>17.2f} us"
            f"{med['client_cpu_us']:>14.2f} us"
        )
    if ("events", "botocore") in results:
        med = _medians(results[("events", "botocore")])
        print(
            f"botocore EventStream through sagehost (what a boto3 user sees), {args.boto_parts}"
            f" parts: {med['events_s']:,.0f} parts/s, split {med['split']:.0f}"
        )
    pairs = zip(results[("events", "sagehost")], results[("events", "direct")], strict=True)
    ratio = statistics.median(s["events_s"] / d["events_s"] for s, d in pairs)
    print(f"events/s sagehost/direct: {ratio:.2f} (median of paired runs)")


if __name__ == "__main__":
    main()
