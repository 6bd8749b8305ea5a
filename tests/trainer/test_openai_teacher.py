"""The OpenAI-compatible teacher against a stub endpoint on loopback."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from tests.trainer.test_iot import FACTS
from trainer.iot import generate_traces
from trainer.teachers import OpenAITeacher


class StubChat(BaseHTTPRequestHandler):
    """Answers like a teacher that follows instructions: each step says its own hop, citing
    only what is revealed, and the last names the strongest candidate."""

    seen: ClassVar[list[dict]] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        StubChat.seen.append(body)
        user = body["messages"][-1]["content"]
        hops = {line[:5]: line for line in user.splitlines() if line.startswith("Hop ")}
        step = int(re.match(r"Step (\d)", user.splitlines()[-1])[1])
        quoted = {hop: re.findall(r'"[^"]*"', line) for hop, line in hops.items()}
        if step == 1:
            text = f"The user chose {quoted['Hop 1'][0]}."
        elif step == 2:
            text = "Several similar users agree with that choice."
        elif step == 3:
            label = re.findall(r"\[C\d+\]", hops["Hop 3"])[0]
            text = f"They went on to {label} {quoted['Hop 3'][0]}."
        else:
            strongest = re.findall(r"\[C\d+\]", user.split("Candidates by evidence")[1])[0]
            text = f"{strongest} has the strongest evidence of all candidates."
        reply = {
            "id": "x",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubChat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    StubChat.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()


def test_openai_teacher_sends_each_wave_and_traces_pass(endpoint):
    teacher = OpenAITeacher("teacher-model", endpoint, concurrency=4)
    traces = generate_traces([(f"s{k}", FACTS) for k in range(3)], teacher)
    assert len(StubChat.seen) == 12  # 3 traces x 4 steps
    assert {b["model"] for b in StubChat.seen} == {"teacher-model"}
    assert all(
        b["temperature"] == 0.0 and b["messages"][0]["role"] == "system" for b in StubChat.seen
    )
    assert [t.answer_label for t in traces] == ["C2", "C2", "C2"]
    assert all(t.passed for t in traces), [t.reject_reason for t in traces]
