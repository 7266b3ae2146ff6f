"""The Arm Cortex-M target: kws.targets.arm.target.ArmTarget (profiles, build, QEMU)."""
