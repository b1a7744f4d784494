"""rba_core.pipeline: preprocess -> backend -> postprocess, shared by the node, replay and eval."""
