"""A real worker with its web console on, for the console's HTTP and browser tests: synthetic
shoppers, among them one whose customer id is an HTML injection, and a logged-in client."""
from __future__ import annotations

import http.client
import json
import uuid
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlsplit

from stream.kafka.embedded_broker import free_port
from stream.kafka.topic_admin import ensure_topics
from stream.rules.catalog import load_catalog
from stream.tools.synth import shopper_events
from stream.worker.loop import Worker

from . import conformance
from .workers import Running, settings

TOKEN = "console-test-token-0123456789abcdef"
HOSTILE_ID = "<img src=x onerror=alert(1)>"      # a customer id straight from a Kafka record


def shopper_lines() -> list[bytes]:
    """300 shoppers; customer c1's events carry HOSTILE_ID instead."""
    hostile = json.dumps(HOSTILE_ID).encode()
    return [line.replace(b'"customer_id":"c1"', b'"customer_id":' + hostile)
            for line in shopper_events(300, 4000, seed=5)]


@dataclass
class ConsoleWorker:
    worker: Worker
    running: Running
    base: str
    bootstrap: str
    state_dir: Path
    group_id: str
    definitions_topic: str
    token_file: Path
    input_topic: str
    rest: list[bytes]                    # the shoppers' events not sent yet

    def feed_the_rest(self) -> None:
        total = self.running.consumed + len(self.rest)
        conformance.produce(self.bootstrap, self.input_topic, self.rest)
        self.running.wait_for(total)


def start_console_worker(bootstrap: str, tmp: Path, held_back: float = 0.0) -> tuple[ConsoleWorker, Running]:
    """The worker running, with all but the last `held_back` share of shopper_lines() consumed
    (ConsoleWorker.feed_the_rest sends the others)."""
    prefix = f"it-console-{uuid.uuid4().hex[:8]}"
    port = free_port()
    (tmp / "http-token").write_text(TOKEN + "\n")
    s = settings(bootstrap, prefix, tmp / "state", metrics_port=port, http_host="127.0.0.1",
                 http_token_file=tmp / "http-token", definitions_topic=f"{prefix}-definitions")
    worker = Worker(s, load_catalog())
    ensure_topics(bootstrap, worker.topics())
    lines = shopper_lines()
    first = lines[:len(lines) - int(len(lines) * held_back)]
    conformance.produce(bootstrap, s.input_topics[0], first)
    running = Running(worker).__enter__()
    try:
        running.wait_for(len(first))
    except BaseException:
        running.__exit__(None, None, None)
        raise
    return ConsoleWorker(worker, running, f"http://127.0.0.1:{port}", bootstrap, s.state_dir, s.group_id,
                         f"{prefix}-definitions", tmp / "http-token", s.input_topics[0], lines[len(first):]), running


@dataclass
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class Client:
    """A browser's part in the protocol: its cookie, its Origin on POSTs, no redirects followed."""
    base: str
    cookie: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def request(self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Answer:
        url = urlsplit(self.base)
        connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
        sent = {**self.extra, **(headers or {})}
        if self.cookie is not None:
            sent.setdefault("Cookie", self.cookie)
        if method == "POST":
            sent.setdefault("Origin", self.base)
        try:
            connection.request(method, path, body=body, headers=sent)
            response = connection.getresponse()
            return Answer(response.status, response.headers, response.read())
        finally:
            connection.close()

    def get(self, path: str, **headers: str) -> Answer:
        return self.request("GET", path, headers=headers)

    def login(self, token: str = TOKEN) -> Answer:
        answer = self.request("POST", "/console/login", f"token={token}".encode(),
                              {"Content-Type": "application/x-www-form-urlencoded"})
        jar: SimpleCookie = SimpleCookie()
        for header in answer.headers.get_all("Set-Cookie") or []:
            jar.load(header)
        if "segments_console" in jar:
            self.cookie = f"segments_console={jar['segments_console'].value}"
        return answer

    def csrf(self) -> str:
        page = self.get("/console/editor").text
        start = page.index('name="csrf-token" content="') + len('name="csrf-token" content="')
        return page[start:page.index('"', start)]

    def post(self, path: str, body: bytes, csrf: str | None, **headers: str) -> Answer:
        sent = {"Content-Type": "text/plain;charset=UTF-8", **headers}
        if csrf is not None:
            sent["X-CSRF-Token"] = csrf
        return self.request("POST", path, body, sent)
