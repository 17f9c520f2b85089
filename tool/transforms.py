"""Equivariant transformations A for SEAM's second branch: ER is ||F(A(I)) - A(F(I))||.

A transformation maps an image batch to the second branch's input, A(I), and the first branch's
maps to the second branch's frame, A(F(I)), the same way, and says which output pixels are
valid: those whose source lies inside the frame (a rotation or translation moves pixels out;
ER's mean and ECR's top-k leave the others out).

    transform = parse_transform("rotate:-15..15+flip")
    step_transform = transform.draw(step_generator(seed, step))   # one value per range, per step
    img2 = step_transform.image(img)                               # branch 2's input
    cam1_in_2 = step_transform.maps(cam1, cam2.shape[2:])          # branch 1 in branch 2's frame
    valid = step_transform.valid(cam2.shape[2:], cam2.device)      # (1, 1, h, w) bool, or None

A new transformation is one class with `image` / `maps` (and `grid`, for one that moves pixels
out of the frame) registered under a name with `@register("name")`.
"""
import math

import torch
import torch.nn.functional as F

TRANSFORMS = {}


def register(name):
    def add(cls):
        TRANSFORMS[name] = cls
        cls.name = name
        return cls

    return add


def step_generator(seed, step):
    """The generator a step's random values come from: a function of (seed, step) alone, so every
    torchrun process draws the same values and the other random streams are untouched."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919 + 104_729) % 2**31)


class Transformation:
    """A transformation with its value (a number, or a (low, high) range drawn per step)."""

    moves_pixels_out = False  # True: some output pixels have their source outside the frame

    def __init__(self, value=None):
        self.value = value

    def draw(self, generator):
        """This transformation with its value fixed for one step."""
        if not isinstance(self.value, tuple):
            return self
        low, high = self.value
        return type(self)(low + (high - low) * float(torch.rand((), generator=generator)))

    def image(self, img):  # N, 3, H, W -> branch 2's input
        return self.maps(img, None)

    def maps(self, maps, size):  # N, C, h, w of branch 1 -> N, C, *size in branch 2's frame
        raise NotImplementedError

    def valid(self, size, device):
        """(1, 1, *size) bool: output pixels whose source lies inside the frame; None when all do."""
        if not self.moves_pixels_out:
            return None
        # inside the outermost pixel centres: no zero padding enters the bilinear sample
        limit = torch.tensor([1 - 1 / size[1], 1 - 1 / size[0]], device=device) + 1e-6
        return (self.grid(size, device).abs() <= limit).all(dim=-1)[:, None]

    def __repr__(self):
        value = self.value
        if isinstance(value, tuple):
            return f"{self.name}:{value[0]:g}..{value[1]:g}"
        return self.name if value is None else f"{self.name}:{value:g}"


@register("rescale")
class Rescale(Transformation):
    """Resize by the ratio (bilinear, align_corners=True): the published 0.3x second branch."""

    def image(self, img):
        return F.interpolate(img, scale_factor=self.value, mode="bilinear", align_corners=True)

    def maps(self, maps, size):
        return F.interpolate(maps, tuple(size), mode="bilinear", align_corners=True)


@register("flip")
class Flip(Transformation):
    """Horizontal flip: exact, and its own inverse."""

    def maps(self, maps, size):
        return maps.flip(-1)


class Warp(Transformation):
    """An affine warp about the image centre by `grid` (bilinear; zeros outside the frame)."""

    moves_pixels_out = True

    def maps(self, maps, size):
        grid = self.grid(maps.shape[2:], maps.device).to(maps.dtype).expand(maps.shape[0], -1, -1, -1)
        return F.grid_sample(maps, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    def grid(self, size, device):
        """(1, h, w, 2) source coordinates in [-1, 1] (x, y) of each output pixel."""
        theta = torch.tensor([self.theta(size)], dtype=torch.float32, device=device)
        return F.affine_grid(theta, (1, 1, *size), align_corners=False)


@register("rotate")
class Rotate(Warp):
    """Rotation by the value in degrees (counter-clockwise on screen)."""

    def theta(self, size):
        h, w = size
        a = math.radians(self.value)
        c, s = math.cos(a), math.sin(a)
        return [[c, -s * h / w, 0.0], [s * w / h, c, 0.0]]  # in pixels, not in [-1, 1] units


@register("translate")
class Translate(Warp):
    """Shift right and down by the value, a fraction of the side (negative: left and up)."""

    def theta(self, size):
        return [[1.0, 0.0, -2 * self.value], [0.0, 1.0, -2 * self.value]]


class Compose(Transformation):
    """`a+b`: a, then b, for images and maps alike; valid where every step's source was."""

    def __init__(self, steps):
        super().__init__(None)
        self.steps = list(steps)
        self.moves_pixels_out = any(t.moves_pixels_out for t in self.steps)

    def draw(self, generator):
        return Compose(t.draw(generator) for t in self.steps)

    def image(self, img):
        for t in self.steps:
            img = t.image(img)
        return img

    def maps(self, maps, size):
        for t in self.steps:
            maps = t.maps(maps, size)
        return maps

    def valid(self, size, device):
        mask = None
        for t in self.steps:  # an invalid region travels on through the later steps
            if mask is not None:
                mask = t.maps(mask.float(), size) > 0.5
            own = t.valid(size, device)
            if own is not None:
                mask = own if mask is None else mask & own
        return mask

    def __repr__(self):
        return "+".join(map(repr, self.steps))


def parse_transform(text):
    """`rescale:0.3`, `flip`, `rotate:15`, `rotate:-15..15`, `translate:0.1`, `rescale:0.5+flip`
    -> the transformation (a Compose for several); ValueError naming the part that is wrong."""
    steps = []
    for part in text.split("+"):
        name, _, value = part.strip().partition(":")
        if name not in TRANSFORMS:
            raise ValueError(f"--transform {text}: {name!r} is not one of {', '.join(sorted(TRANSFORMS))}")
        cls = TRANSFORMS[name]
        if (cls is Flip) != (value == ""):
            raise ValueError(f"--transform {text}: {name} " + ("takes no value" if cls is Flip else "needs a value, "
                                                                 f"e.g. {name}:0.5"))
        steps.append(cls(_value(text, value) if value else None))
    for step in steps:
        if step.name == "rescale" and min(step.value if isinstance(step.value, tuple) else (step.value,)) <= 0:
            raise ValueError(f"--transform {text}: a rescale ratio must be > 0")
    return steps[0] if len(steps) == 1 else Compose(steps)


def _value(text, value):
    try:
        if ".." in value:
            low, high = (float(v) for v in value.split("..", 1))
            if not low < high:
                raise ValueError
            return (low, high)
        return float(value)
    except ValueError:
        raise ValueError(f"--transform {text}: {value!r} is not a number or a range low..high") from None
