"""rba_ros: the ROS 2 node around rba_core (perception_node: cameras in, segmentation, anomaly,
obstacles and a costmap cloud out)."""
