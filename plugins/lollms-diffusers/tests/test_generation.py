"""Generation with the tiny pipelines: formats, sizes, determinism, progress, parameters."""

from __future__ import annotations

import io
import sys
import wave
from typing import Any

import diffusers
import pytest
from lollms_diffusers import DiffusersBinding, encode
from PIL import Image

from lollms_server.bindings import Chunk, Output
from lollms_server.errors import (
    InvalidRequest,
    MissingDependency,
    ModelNotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from lollms_server.testing import started_binding

from .conftest import AUDIO, INSTANCE, SD, VIDEO, image_input, make_request

PNG = b"\x89PNG\r\n\x1a\n"


async def outputs(binding: DiffusersBinding, kind: str, model: str = SD, **kw: Any) -> list[Output]:
    """The media outputs of one generate() call."""
    result = await binding.generate(make_request(kind, model, **kw))
    media = [o for o in result.outputs if o.type != "text"]
    assert media and len(media) == len(result.outputs), result.outputs
    return media


async def chunks(binding: DiffusersBinding, kind: str, model: str = SD, **kw: Any) -> list[Chunk]:
    """Every chunk of one stream() call."""
    return [chunk async for chunk in binding.stream(make_request(kind, model, **kw))]


def picture(data: bytes) -> Image.Image:
    """A decoded PNG (asserting it is one)."""
    assert data.startswith(PNG), data[:8]
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_text_to_image_is_a_png_of_the_requested_size(binding: DiffusersBinding) -> None:
    (image,) = await outputs(binding, "tti", width=64, height=48, seed=3)
    assert image.mime_type == "image/png"
    assert picture(image.data).size == (64, 48)
    assert image.metadata["seed"] == 3 and image.metadata["model"] == SD
    assert image.metadata["steps"] == 2  # the instance's default_steps


async def test_same_seed_same_bytes_other_seed_other_bytes(binding: DiffusersBinding) -> None:
    (first,) = await outputs(binding, "tti", seed=7)
    (again,) = await outputs(binding, "tti", seed=7)
    (other,) = await outputs(binding, "tti", seed=8)
    assert first.data == again.data
    assert first.data != other.data


async def test_n_images_use_consecutive_seeds(binding: DiffusersBinding) -> None:
    pair = await outputs(binding, "tti", seed=7, n=2)
    assert [o.metadata["seed"] for o in pair] == [7, 8]
    assert pair[0].data != pair[1].data
    assert [o.data for o in await outputs(binding, "tti", seed=7, n=2)] == [o.data for o in pair]
    (alone,) = await outputs(binding, "tti", seed=8)
    (unrelated,) = await outputs(binding, "tti", seed=9)
    # a batch computes in other float order, so compare pixels: image 2 is seed 8's image
    assert difference(pair[1].data, alone.data) < 1.0 < difference(pair[1].data, unrelated.data)


async def test_seed_minus_one_is_a_random_seed(binding: DiffusersBinding) -> None:
    """`seed: -1` (what lollms clients send for "random") is no 400: a random seed, reported,
    that gives the same image again; -2 is still refused."""
    (first,) = await outputs(binding, "tti", seed=-1)
    (second,) = await outputs(binding, "tti", seed=-1)
    seed = first.metadata["seed"]
    assert isinstance(seed, int) and seed >= 0 and seed != second.metadata["seed"]
    (again,) = await outputs(binding, "tti", seed=seed)
    assert again.data == first.data
    with pytest.raises(InvalidRequest, match="seed"):
        await outputs(binding, "tti", seed=-2)


def difference(first: bytes, second: bytes) -> float:
    """Mean absolute difference of two images' pixel values (0-255)."""
    a, b = picture(first).tobytes(), picture(second).tobytes()
    assert len(a) == len(b)
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


async def test_no_seed_gives_a_reported_random_seed(binding: DiffusersBinding) -> None:
    (first,) = await outputs(binding, "tti")
    (second,) = await outputs(binding, "tti")
    assert isinstance(first.metadata["seed"], int)
    assert first.metadata["seed"] != second.metadata["seed"]
    (redo,) = await outputs(binding, "tti", seed=first.metadata["seed"])
    assert redo.data == first.data


async def test_n_is_capped_by_max_images(settings: dict[str, Any]) -> None:
    async with started_binding(DiffusersBinding, INSTANCE, {**settings, "max_images": 2}) as b:
        assert isinstance(b, DiffusersBinding)
        assert len(await outputs(b, "tti", n=5, seed=1)) == 2


async def test_negative_prompt_and_guidance_change_the_image(binding: DiffusersBinding) -> None:
    (plain,) = await outputs(binding, "tti", seed=4)
    (negative,) = await outputs(binding, "tti", seed=4, negative_prompt="dog")
    (guided,) = await outputs(binding, "tti", seed=4, guidance_scale=1.0)
    assert len({plain.data, negative.data, guided.data}) == 3
    assert guided.metadata["guidance_scale"] == 1.0


async def test_progress_is_reported_step_by_step(binding: DiffusersBinding) -> None:
    got = await chunks(binding, "tti", steps=3, seed=1)
    info = [c for c in got if c.type == "info"]
    assert info[0].metadata == {"loading": SD}
    steps = [(c.metadata["step"], c.metadata["steps"]) for c in info if "step" in c.metadata]
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert [c.content for c in info[1:]] == ["step 1/3", "step 2/3", "step 3/3"]
    last = got[-1]
    assert last.type == "chunk" and last.output is not None and last.finish_reason == "stop"
    again = await chunks(binding, "tti", steps=2, seed=1)
    assert "loading" not in again[0].metadata, "a loaded model is not loaded again"


async def test_image_to_image_follows_strength(binding: DiffusersBinding) -> None:
    (source,) = await outputs(binding, "tti", seed=1)
    inputs = (image_input(source.data),)
    got = await chunks(binding, "i2i", inputs=inputs, steps=4, strength=0.5, seed=2)
    totals = {c.metadata["steps"] for c in got if "step" in c.metadata}
    assert totals == {2}, "strength 0.5 of 4 steps denoises 2"
    image = got[-1].output
    assert image is not None and picture(image.data).size == (64, 64)
    (stronger,) = await outputs(binding, "i2i", inputs=inputs, steps=4, strength=1.0, seed=2)
    assert stronger.data != image.data


async def test_image_to_image_defaults_to_the_input_size(binding: DiffusersBinding) -> None:
    (source,) = await outputs(binding, "tti", width=96, height=64, seed=1)
    (edited,) = await outputs(binding, "i2i", inputs=(image_input(source.data),), seed=2)
    assert picture(edited.data).size == (96, 64)
    (resized,) = await outputs(
        binding, "i2i", inputs=(image_input(source.data),), seed=2, width=64, height=64
    )
    assert picture(resized.data).size == (64, 64)


async def test_inpainting_with_a_mask(binding: DiffusersBinding) -> None:
    (source,) = await outputs(binding, "tti", seed=1)
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    inputs = (image_input(source.data), image_input(buffer.getvalue(), "mask_image"))
    (inpainted,) = await outputs(binding, "i2i", inputs=inputs, seed=2, strength=0.9)
    (plain,) = await outputs(binding, "i2i", inputs=inputs[:1], seed=2, strength=0.9)
    assert picture(inpainted.data).size == (64, 64)
    assert inpainted.data != plain.data, "the mask must change what is generated"
    (again,) = await outputs(binding, "i2i", inputs=inputs, seed=2, strength=0.9)
    assert again.data == inpainted.data


async def test_image_to_image_input_errors(binding: DiffusersBinding) -> None:
    with pytest.raises(InvalidRequest, match="image input"):
        await outputs(binding, "i2i")
    with pytest.raises(UnsupportedMediaType):
        await outputs(binding, "i2i", inputs=(image_input(b"not an image"),))


def huge_png(width: int, height: int) -> bytes:
    """A black 8-bit grey PNG of `width` x `height`, a few hundred KB however big it decodes
    (written row by row: the test never holds the pixels)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    packer = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte 0, then black pixels
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


async def test_a_huge_input_image_is_refused_before_it_is_decoded(
    binding: DiffusersBinding,
) -> None:
    """An input image is refused by its header: over max_size (no width/height asked) a 400,
    over PIL's MAX_IMAGE_PIXELS (89.5M, where PIL warns of a decompression bomb) a 413. Before,
    it was decoded first: a 12,000 x 12,000 PNG of 140 KB took 1.1 s and ~1 GB in the
    pipeline's worker (the model held) before its max_size refusal, and with a small
    width/height (or as a mask) it was served."""
    bomb = huge_png(12_000, 12_000)
    assert len(bomb) < 1_000_000
    # a header, and pixels that stop short: a decoder would say truncated (415)
    header_only = huge_png(4000, 4000)[:4096]
    with pytest.raises(InvalidRequest, match=r"4000x4000.*max_size") as refused:
        await outputs(binding, "i2i", inputs=(image_input(header_only),), seed=2)
    assert refused.value.status == 400
    for inputs, extra in [
        ((image_input(bomb),), {"width": 64, "height": 64}),
        ((image_input(huge_png(64, 64)), image_input(bomb, "mask_image")), {}),
    ]:
        with pytest.raises(PayloadTooLarge, match="144000000 pixels"):
            await outputs(binding, "i2i", inputs=inputs, seed=2, **extra)
    (fine,) = await outputs(binding, "i2i", inputs=(image_input(huge_png(96, 64)),), seed=2)
    assert picture(fine.data).size == (96, 64)


async def test_n_videos_are_made_one_seed_each(binding: DiffusersBinding) -> None:
    """`n` works for video as for images: video i has seed + i and is the video that seed
    gives alone. Before, n=2 was a 502 (diffusers' video pipelines make one video a call and
    refused the list of two generators), a backend failure counted by the circuit breaker."""
    size = {"width": 32, "height": 32, "frames": 2}
    first, second = await outputs(binding, "ttv", VIDEO, n=2, seed=7, **size)
    assert [first.metadata["seed"], second.metadata["seed"]] == [7, 8]
    assert first.data != second.data
    (alone,) = await outputs(binding, "ttv", VIDEO, n=1, seed=8, **size)
    assert alone.data == second.data


async def test_text_to_video_is_an_animated_gif(binding: DiffusersBinding) -> None:
    (video,) = await outputs(binding, "ttv", VIDEO, width=32, height=32, frames=4, seed=1)
    assert video.type == "video" and video.mime_type == "image/gif"
    assert video.data.startswith(b"GIF89a")
    with Image.open(io.BytesIO(video.data)) as gif:
        assert gif.n_frames == 4 and gif.size == (32, 32) and gif.is_animated
        assert abs(gif.info["duration"] - 125) <= 10  # 8 fps (GIF counts in 10 ms units)
    assert video.metadata["frames"] == 4 and video.metadata["fps"] == 8
    (again,) = await outputs(binding, "ttv", VIDEO, width=32, height=32, frames=4, seed=1)
    assert again.data == video.data


async def test_video_formats(binding: DiffusersBinding) -> None:
    kw: dict[str, Any] = {"width": 32, "height": 32, "frames": 3, "seed": 1, "fps": 10}
    (webp,) = await outputs(binding, "ttv", VIDEO, format="webp", **kw)
    assert webp.mime_type == "image/webp" and webp.data[8:12] == b"WEBP"
    (apng,) = await outputs(binding, "ttv", VIDEO, format="apng", **kw)
    assert apng.mime_type == "image/apng" and apng.data.startswith(PNG)
    for data in (webp.data, apng.data):
        with Image.open(io.BytesIO(data)) as animation:
            assert animation.n_frames == 3
    with pytest.raises(InvalidRequest, match="format"):
        await outputs(binding, "ttv", VIDEO, format="mkv", **kw)


def decoded_video(data: bytes) -> tuple[str, list[Image.Image], float]:
    """Codec name, frames and frame rate of an MP4, decoded back with PyAV."""
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        codec, rate = stream.codec_context.name, float(stream.average_rate or 0)
        frames = [Image.fromarray(f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    return codec, frames, rate


async def test_text_to_video_as_mp4(binding: DiffusersBinding) -> None:
    kw: dict[str, Any] = {"width": 32, "height": 32, "frames": 4, "seed": 1, "format": "mp4"}
    (video,) = await outputs(binding, "ttv", VIDEO, **kw)
    assert video.type == "video" and video.mime_type == "video/mp4"
    assert video.data[4:8] == b"ftyp"
    assert video.data.find(b"moov") < video.data.find(b"mdat"), "faststart: index first"
    codec, frames, rate = decoded_video(video.data)
    assert codec == "h264" and rate == 8.0
    assert len(frames) == 4 and {f.size for f in frames} == {(32, 32)}
    (again,) = await outputs(binding, "ttv", VIDEO, **kw)
    assert again.data == video.data


async def test_mp4_without_h264_and_without_pyav(
    binding: DiffusersBinding, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = [Image.new("RGB", (34, 21), (40 * i, 0, 0)) for i in range(3)]
    monkeypatch.setattr(encode, "MP4_CODECS", (("no-such-codec", {}), ("mpeg4", {})))
    data, mime = encode.animation(frames, 5, "mp4")
    codec, decoded, rate = decoded_video(data)
    assert (mime, codec, len(decoded), rate) == ("video/mp4", "mpeg4", 3, 5.0)
    assert decoded[0].size == (34, 20), "odd sides are cropped to even ones"
    monkeypatch.setitem(sys.modules, "av", None)  # import av fails, find_spec finds nothing
    with pytest.raises(MissingDependency, match="pip install av"):
        encode.animation(frames, 5, "mp4")
    with pytest.raises(MissingDependency, match="pip install av"):  # before generating
        await outputs(binding, "ttv", VIDEO, format="mp4")
    assert binding.loaded_models() == []


async def test_text_to_sound_is_a_wav(binding: DiffusersBinding) -> None:
    (sound,) = await outputs(binding, "ttm", AUDIO, duration=1.0, seed=1)
    assert sound.type == "audio" and sound.mime_type == "audio/wav"
    with wave.open(io.BytesIO(sound.data)) as reader:
        assert reader.getnchannels() == 1 and reader.getsampwidth() == 2
        assert reader.getframerate() == 16000
        assert reader.getnframes() == 16000
        samples = reader.readframes(reader.getnframes())
    assert any(samples), "silence"
    assert sound.metadata["sample_rate"] == 16000 and sound.metadata["duration_s"] == 1.0
    (again,) = await outputs(binding, "ttm", AUDIO, duration=1.0, seed=1)
    (other,) = await outputs(binding, "ttm", AUDIO, duration=1.0, seed=2)
    assert again.data == sound.data and other.data != sound.data


async def test_wrong_model_or_parameters_are_rejected(binding: DiffusersBinding) -> None:
    with pytest.raises(ModelNotFound, match="tiny-sd"):
        await outputs(binding, "tti", "no-such-model")
    with pytest.raises(InvalidRequest, match="cannot do 'tti'"):
        await outputs(binding, "tti", AUDIO)
    with pytest.raises(InvalidRequest, match="cannot do 'ttv'"):
        await outputs(binding, "ttv", SD)
    with pytest.raises(InvalidRequest, match="multiple of 8"):
        await outputs(binding, "tti", width=65)
    with pytest.raises(InvalidRequest, match="steps"):
        await outputs(binding, "tti", steps=100_000)
    with pytest.raises(InvalidRequest, match="strength"):
        await outputs(binding, "tti", strength=2)
    assert binding.loaded_models() == [], "a rejected request loads nothing"


async def test_a_cut_prompt_stays_out_of_the_log(binding: DiffusersBinding) -> None:
    """CLIP reads 77 tokens: diffusers warns with the cut part of the prompt (on its own stderr
    handler); the warning stays, the prompt's text does not."""
    (handler,) = diffusers.utils.logging.get_logger().handlers
    written = io.StringIO()
    previous = handler.setStream(written)  # type: ignore[attr-defined]
    try:
        secret = " ".join(f"confidential{i}" for i in range(120))
        request = make_request("tti", prompt=f"a red circle {secret}", width=32, height=32, seed=1)
        result = await binding.generate(request)
    finally:
        handler.setStream(previous)  # type: ignore[attr-defined]
    assert result.outputs[0].mime_type == "image/png"
    assert "cut to the text encoder's token limit" in written.getvalue()
    assert "confidential1" not in written.getvalue()


@pytest.mark.parametrize(("fmt", "mime"), [("jpeg", "image/jpeg"), ("webp", "image/webp")])
async def test_output_format_gives_jpeg_or_webp(
    binding: DiffusersBinding, fmt: str, mime: str
) -> None:
    """OpenAI's `output_format` and `output_compression` (quality) are honoured."""
    (best,) = await outputs(binding, "tti", width=64, height=48, seed=3, output_format=fmt)
    (small,) = await outputs(
        binding, "tti", width=64, height=48, seed=3, output_format=fmt, output_compression=5
    )
    assert best.mime_type == small.mime_type == mime
    decoded = Image.open(io.BytesIO(best.data))
    assert decoded.format == fmt.upper() and decoded.size == (64, 48)
    assert len(small.data) < len(best.data)


async def test_an_unknown_output_format_is_refused(binding: DiffusersBinding) -> None:
    with pytest.raises(InvalidRequest) as refused:
        await binding.generate(make_request("tti", width=32, height=32, output_format="exe"))
    assert refused.value.param == "output_format" and "png, jpeg, webp" in refused.value.message


async def test_format_names_what_each_task_gives(binding: DiffusersBinding) -> None:
    """`format` on an image asks for an image format; on a sound, only wav is there."""
    (image,) = await outputs(binding, "tti", width=32, height=32, seed=1, format="webp")
    assert image.mime_type == "image/webp"
    with pytest.raises(InvalidRequest) as refused:
        await binding.generate(make_request("ttm", AUDIO, duration=1.0, format="mp3"))
    assert refused.value.param == "format" and "allowed for ttm: wav" in refused.value.message


async def test_a_sound_format_asked_as_response_format_is_refused_too(
    binding: DiffusersBinding,
) -> None:
    """`response_format` (the name lollms-audio and OpenAI speech use for the same ask) of
    anything but wav is a 400 on ttm, as `format` is; before, `response_format: "mp3"` was
    ignored and a WAV came back."""
    with pytest.raises(InvalidRequest) as refused:
        await binding.generate(make_request("ttm", AUDIO, duration=1.0, response_format="mp3"))
    assert refused.value.param == "response_format" and "wav" in refused.value.message
    (sound,) = await outputs(binding, "ttm", AUDIO, duration=1.0, seed=1, response_format="wav")
    assert sound.mime_type == "audio/wav"


async def test_a_gif_faster_than_it_can_play_is_refused(binding: DiffusersBinding) -> None:
    """GIF frame delays are in 1/100 s and browsers play delays under 20 ms as 100 ms: above
    50 fps a GIF would play at 10 fps. Before, fps 120 wrote delays of 0 (fps 60: 10 ms) and
    said fps 120 in the metadata; now it is a 400 naming fps and the formats that can."""
    size = {"width": 32, "height": 32, "frames": 2, "seed": 1}
    with pytest.raises(InvalidRequest) as refused:
        await binding.generate(make_request("ttv", VIDEO, fps=60, **size))
    assert refused.value.param == "fps" and "webp" in refused.value.message
    (gif,) = await outputs(binding, "ttv", VIDEO, fps=50, **size)
    with Image.open(io.BytesIO(gif.data)) as image:
        assert image.info["duration"] == 20
    (apng,) = await outputs(binding, "ttv", VIDEO, fps=120, format="apng", **size)
    assert apng.metadata["fps"] == 120
    (image,) = await outputs(binding, "tti", width=32, height=32, seed=1, fps=120)
    assert image.mime_type == "image/png"  # fps means nothing to an image
