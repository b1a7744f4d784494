"""rba_core: RbA ("Rejected by All") anomaly segmentation with Mask2Former, without ROS.

Layers (imports go one way): pipeline -> runtime -> model. ``rba_core`` never imports rclpy.
"""
__version__ = "0.1.0"
