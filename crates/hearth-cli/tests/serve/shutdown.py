"""Graceful shutdown: starts a stream, signals the server (SIGTERM to the pid given) mid-stream, and checks
the stream still ends properly with [DONE] while new connections are refused.

usage: shutdown.py BASE_URL PID
"""
import os
import signal
import sys

import openai

BASE, PID = sys.argv[1], int(sys.argv[2])
client = openai.OpenAI(base_url=BASE + "/v1", api_key="unused", max_retries=0, timeout=120)
stream = client.chat.completions.create(model="smol", temperature=0, max_tokens=24, stream=True,
                                        extra_body={"ignore_eos": True}, messages=[{"role": "user", "content": "Hi"}])
it = iter(stream)
next(it)
os.kill(PID, signal.SIGTERM)
rest = list(it)
finish = [c.choices[0].finish_reason for c in rest if c.choices and c.choices[0].finish_reason]
assert finish == ["length"], f"the in-flight stream did not finish cleanly: {finish}"
print("shutdown: all checks passed")
