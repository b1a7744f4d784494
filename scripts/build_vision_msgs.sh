#!/usr/bin/env bash
# Placeholder until the node issue adds the vision_msgs interface build.
exit 0
