"""The bond that nav2_lifecycle_manager forms with every node it manages.

Like nav2_util::LifecycleNode: on activate the node starts a bond on topic ``bond`` with its own
name as id (heartbeat 0.1 s, timeout 4 s); on deactivate it breaks it. The bond is bondpy's,
from a ROS install (ros-<distro>-bondpy, package.xml). The PyPI package named ``bondpy`` is
unrelated, so the real one is recognised by ``bond.msg.Status`` and ``bondpy.bondpy.Bond``.
Without it there is no bond: the lifecycle manager then needs ``bond_timeout: 0.0``.
"""
from __future__ import annotations

HEARTBEAT_PERIOD = 0.1   # seconds, nav2_util::LifecycleNode's
HEARTBEAT_TIMEOUT = 4.0  # seconds


def bond_class():
    """bondpy's ``Bond`` from a ROS 2 install, or None."""
    try:
        from bond.msg import Status  # noqa: F401 - only the ROS package has it
        from bondpy.bondpy import Bond
    except ImportError:
        return None
    return Bond


class NodeBond:
    """Start on activate, break on deactivate; a no-op (said once) without bondpy."""

    def __init__(self, node, topic: str = "bond"):
        self.node, self.topic, self.bond = node, topic, None
        self._cls = bond_class()
        if self._cls is None:
            node.get_logger().info(
                "no bondpy (ROS package ros-$ROS_DISTRO-bondpy): no bond with a lifecycle manager; "
                "nav2_lifecycle_manager needs bond_timeout: 0.0 for this node")

    def start(self) -> None:
        if self._cls is None or self.bond is not None:
            return
        bond = self._cls(self.topic, self.node.get_name(), self.node)
        bond.heartbeat_period = HEARTBEAT_PERIOD
        bond.heartbeat_timeout = HEARTBEAT_TIMEOUT
        bond.start()
        self.bond = bond

    def stop(self) -> None:
        bond, self.bond = self.bond, None
        if bond is not None:
            bond.shutdown()  # breaks the bond (tells the manager), then drops its topic
