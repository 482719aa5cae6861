"""Resources: model lifecycle, scheduler and queue, GPU probe."""
