"""Prompt artist: the text model refines the idea into an image prompt, then the default
text-to-image binding draws it. Runs inside lollms-server (see its README, "Scripted
personalities")."""

from __future__ import annotations

from typing import Any

IMAGE_PARAMETERS = ("width", "height", "seed", "steps", "negative_prompt", "guidance_scale")


async def run_workflow(prompt: str, params: dict[str, Any], context: Any) -> None:
    """Refine `prompt` into an image prompt, stream it, then add the drawn image."""
    context.send_info("refining the prompt", step="refine")
    instruction = (
        "Rewrite this idea as one detailed image-generation prompt (subject, style, lighting), "
        f"on one line, without any preamble: {prompt}"
    )
    text_params = {k: params[k] for k in ("temperature", "max_tokens") if k in params}
    refined = (await context.generate_text(instruction, parameters=text_params)).strip()
    refined = refined.splitlines()[0] if refined else prompt
    context.send_chunk(refined)
    context.send_info("drawing the image", step="draw")
    image_params = {k: params[k] for k in IMAGE_PARAMETERS if k in params}
    drawn = await context.generate(refined, generation_type="tti", parameters=image_params)
    for output in drawn.outputs:
        if output.type != "text":
            context.send_output(output)
