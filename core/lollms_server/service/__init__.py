"""The generation service: one path every face uses (generation, fallback routing, the tool
loop, scripted workflows, personalities, server-side functions)."""
