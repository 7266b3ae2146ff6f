"""The AVR target: kws.targets.avr.target.AvrTarget (build, sizes, flash, simulate)."""
