"""genlab's own methods, one manifest module each (see `genlab.registry`). A new method brings its own files and
adds one line here."""

from . import core, ddt, dit, ett, faster_diffusion, himar, mvar, nar, tokenbridge  # noqa: F401
