"""rba_core.replay: rosbag replay, ground-truth evaluation and threshold calibration (no ROS)."""
