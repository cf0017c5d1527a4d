"""The server as the official `openai` client sees it: completions, chat, streaming, images,
speech, embeddings and the model list."""

from __future__ import annotations

import base64
import io
import json
import wave

import httpx
import numpy as np
import pytest

openai = pytest.importorskip("openai", reason="the official openai client is not installed")

MASK = "\u2591"


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", timeout=120, max_retries=0)


def test_a_completion_returns_new_text_and_counts_its_tokens(client):
    answer = client.completions.create(model="text", prompt="The king said", max_tokens=24,
                                       seed=3)
    [choice] = answer.choices
    assert choice.text.strip() and MASK not in choice.text
    assert choice.finish_reason in ("stop", "length")
    assert 0 < answer.usage.completion_tokens <= 24
    assert answer.usage.prompt_tokens >= 3
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens


def test_the_same_seed_gives_the_same_completion(client):
    first, second = (client.completions.create(model="text", prompt="Love is", max_tokens=16,
                                               seed=11).choices[0].text for _ in range(2))
    assert first == second


def test_n_gives_several_different_choices(client):
    answer = client.completions.create(model="text", prompt="Love is", max_tokens=16, seed=5,
                                       n=3)
    texts = [c.text for c in answer.choices]
    assert [c.index for c in answer.choices] == [0, 1, 2]
    assert len(set(texts)) > 1


def test_stop_cuts_the_completion_before_the_stop_string(client):
    whole = client.completions.create(model="text", prompt="And the LORD said", max_tokens=32,
                                      seed=2).choices[0].text
    word = whole.split()[2]
    cut = client.completions.create(model="text", prompt="And the LORD said", max_tokens=32,
                                    seed=2, stop=[word])
    assert cut.choices[0].text == whole[:whole.find(word)]
    assert cut.choices[0].finish_reason == "stop"


def test_chat_answers_as_the_assistant(client):
    answer = client.chat.completions.create(
        model="text", messages=[{"role": "system", "content": "Speak as a king."},
                                {"role": "user", "content": "What is love?"}],
        max_tokens=20, seed=4)
    message = answer.choices[0].message
    assert message.role == "assistant" and message.content.strip()


def test_streamed_deltas_join_into_the_completion_without_streaming(client):
    whole = client.completions.create(model="text", prompt="To be or not", max_tokens=24,
                                      seed=9, extra_body={"steps": 12}).choices[0].text
    chunks = list(client.completions.create(model="text", prompt="To be or not",
                                            max_tokens=24, seed=9, stream=True,
                                            extra_body={"steps": 12}))
    assert len(chunks) > 2  # the front of the text arrives while the rest is still masked
    assert "".join(c.choices[0].text for c in chunks) == whole
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_a_stream_can_end_with_the_token_counts(client):
    chunks = list(client.completions.create(model="text", prompt="To be", max_tokens=12,
                                            seed=2, stream=True,
                                            stream_options={"include_usage": True}))
    assert chunks[-1].choices == [] and 0 < chunks[-1].usage.completion_tokens <= 12


def test_chat_streams_deltas_after_the_role(client):
    chunks = list(client.chat.completions.create(
        model="text", messages=[{"role": "user", "content": "Tell me of the sea"}],
        max_tokens=16, seed=1, stream=True))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text.strip() and MASK not in text


def test_steps_stream_shows_the_masked_text_filling_in(server):
    body = {"model": "text", "prompt": "The sea", "max_tokens": 20, "seed": 6, "steps": 10,
            "stream": True, "stream_format": "steps"}
    with httpx.stream("POST", f"{server}/v1/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        events = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: ") and line != "data: [DONE]"]
    steps = [e for e in events if not e["aios"]["final"]]
    final = events[-1]
    assert [e["aios"]["step"] for e in steps] == list(range(10))
    masked = [e["aios"]["masked"] for e in steps]
    assert masked == sorted(masked, reverse=True) and masked[-1] == 0
    assert MASK in steps[0]["choices"][0]["text"]  # positions still masked are shown
    assert final["aios"]["final"] and MASK not in final["choices"][0]["text"]
    alone = httpx.post(f"{server}/v1/completions", timeout=120, json={
        k: v for k, v in body.items() if k not in ("stream", "stream_format")}).json()
    assert final["choices"][0]["text"] == alone["choices"][0]["text"]


def test_images_come_back_as_png(client):
    from PIL import Image

    answer = client.images.generate(model="image", prompt="sneaker", n=2,
                                    response_format="b64_json", extra_body={"seed": 1})
    assert len(answer.data) == 2
    images = [np.asarray(Image.open(io.BytesIO(base64.b64decode(d.b64_json))))
              for d in answer.data]
    assert all(i.shape == (28, 28) and i.dtype == np.uint8 for i in images)
    assert not np.array_equal(images[0], images[1]) and images[0].std() > 10


def test_an_image_url_serves_the_png(client):
    answer = client.images.generate(model="image", prompt="bag", response_format="url")
    response = httpx.get(answer.data[0].url, timeout=30)
    assert response.status_code == 200 and response.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_speech_comes_back_as_wav(client):
    audio = client.audio.speech.create(model="audio", input="seven", voice="alloy",
                                       response_format="wav")
    with wave.open(io.BytesIO(audio.read())) as wav:
        assert wav.getnchannels() == 1 and wav.getsampwidth() == 2
        samples = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert wav.getframerate() > 0 and len(samples) > 1000 and np.abs(samples).max() > 100


def test_embeddings_are_the_memory_embedders_unit_vectors(client, server):
    answer = client.embeddings.create(model=_embedder(server),
                                      input=["a cat sat", "a cat sat", "stock markets fell"])
    vectors = np.array([d.embedding for d in answer.data])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)
    assert vectors[0] @ vectors[2] < 0.9


def _embedder(server: str) -> str:
    models = httpx.get(f"{server}/v1/models", timeout=30).json()["data"]
    return next(m["id"] for m in models if m["kind"] == "embedder")


def test_the_model_list_names_heads_shipped_models_and_the_embedder(client):
    listed = {m.id for m in client.models.list().data}
    assert {"text", "image", "audio"} <= listed
    assert "text/memory" in listed
    assert client.models.retrieve("text").id == "text"


def test_a_shipped_model_serves_by_name(client):
    answer = client.completions.create(model="text/memory", prompt="Paris is", max_tokens=8,
                                       seed=1)
    assert answer.model == "text/memory" and answer.choices[0].text
