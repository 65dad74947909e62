"""Painting what a warp of one photo cannot show: the mouth interior and closing eyelids.

A portrait usually has closed lips and open eyes. When the driven inner lips
part, :class:`MouthPainter` shows a real mouth interior there (teeth, cavity,
tongue), taken from an atlas of real mouths
(:mod:`teller_agent.render.mouth_atlas`) and matched to the portrait's light and
colour. When the driven upper lid comes down, :func:`paint_eyelids` slides the
skin above the lid (the portrait's own, its tone and grain) with a lash line over the
still eyeball.

Both work inside the feature's bounding box only, with soft edges, and modify
``frame`` in place.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..face.face68 import INNER_LIPS
from .mouth_atlas import (
    PATCH_HEIGHT,
    PATCH_WIDTH,
    canonical_coords,
    cut_patch,
    lip_ring_lab,
    load_atlas,
    mouth_shape,
    smooth_chain,
)

#: Cavity lift of the matched atlas: Lab lightness below ``[0]`` is raised by up to ``[1]`` and
#: shifted toward red by up to ``[2]`` (a*, scaled by the portrait's chroma ratio).
CAVITY_LIFT = (30.0, 9.0, 7.0)
#: Lash colour where the photo shows no lid edge to read it from (RGB).
_LASH = np.array([38.0, 28.0, 26.0], np.float32)
#: Pixels of photo above the lid fold per pixel of closing lid (the lid skin unfolds as it closes).
LID_STRETCH = 0.3
#: Height of the closing lid's top edge above the upper-lid landmarks (clear of the photo's own
#: lashes), as a share of the eye's width.
LID_FOLD = 0.1
#: Width over which the closing lid's top edge blends into the skin above, as a share of the eye's width.
LID_FEATHER = 0.1
#: Darkening of the closed lid toward its edge (the lid turns away from the light over the eyeball).
LID_SHADE = 0.08
#: Size of the grey closing that removes the photo's hairs (lashes, brow tips) from the lid skin, as a
#: share of the eye's width.
LID_HAIR_CLOSING = 0.08
#: Half-width of the closed lid's lash line, as a share of the eye's width (at least 0.6 px).
LASH_WIDTH = 0.025


def smoothstep(x: np.ndarray) -> np.ndarray:
    """Hermite ease 3x^2 - 2x^3 of ``x`` clipped to [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _box(frame: np.ndarray, x0: float, x1: float, y0: float, y1: float):
    h, w = frame.shape[:2]
    ix0, ix1 = max(int(np.floor(x0)), 0), min(int(np.ceil(x1)) + 1, w)
    iy0, iy1 = max(int(np.floor(y0)), 0), min(int(np.ceil(y1)) + 1, h)
    if ix1 <= ix0 or iy1 <= iy0:
        return None
    return ix0, ix1, iy0, iy1


def mouth_gap(inner_lips: np.ndarray) -> float:
    """Largest vertical inner-lip gap in pixels; ``inner_lips`` is (8, 2) = landmarks 60-67."""
    upper, lower = inner_lips[[1, 2, 3]], inner_lips[[7, 6, 5]]
    return float(max((lower[:, 1] - upper[:, 1]).max(), 0.0))


class MouthPainter:
    """Shows a real mouth interior between the driven inner lips of one portrait.

    At construction the atlas (:mod:`teller_agent.render.mouth_atlas`) is matched once to the
    portrait's light and colour, in CIE Lab, from its lip ring (between the outer and the inner lip
    contour) against each patch's source lip ring: lightness is scaled by a damped ratio of the
    rings' mean lightness, and chroma by the ratio of their mean chroma (so a black-and-white
    photo gets grey teeth), with a partial shift toward the portrait's lip hue.

    Per frame (:meth:`paint`): the opening ``r`` and relative width ``w`` of the driven inner lips
    (:mod:`~teller_agent.render.mouth_atlas`, module docstring) pick the grid cells around them;
    their patches are blended with weights that are smooth (C1) in ``r`` and ``w``, so a slowly
    changing mouth never switches patch abruptly. Beyond the atlas's widest opening the
    patch's darkest band of rows (the cavity, found per patch at construction) stretches while
    the rows above and below it (teeth, tongue) keep their size. The patch is warped into the driven opening through the canonical column map
    (:func:`~teller_agent.render.mouth_atlas.canonical_coords`) and blended with a mask feathered
    at the lip edges, only inside the inner lips' bounding box.

    A portrait that shows its own mouth interior (inner lips parted by at least
    :attr:`OWN_MIN_OPENING` of their width: a smile with teeth, a speaking photo) keeps it: its
    interior is cut once into the canonical patch (:func:`~teller_agent.render.mouth_atlas.cut_patch`);
    as the driven mouth opens past the portrait's, that interior stays at its pixel size under the
    upper lip (upper teeth move with the upper jaw and do not stretch), and the atlas patch from
    the top of its cavity band down (cavity, tongue, lower teeth) fills the rest of the opening.
    So the person's own teeth stay theirs instead of being replaced by someone else's.

    Args:
        image: ``(S, S, 3) uint8`` RGB portrait crop (the renderer's).
        landmarks: ``(68, 2)`` float pixel positions of its landmarks.
        atlas: a :class:`~teller_agent.render.mouth_atlas.MouthAtlas`; default: the shipped one
            (:func:`~teller_agent.render.mouth_atlas.load_atlas`).
        own_interior: keep the portrait's own interior when it shows one (above); False paints
            the atlas's interior into every portrait.

    Raises:
        MouthAtlasError: ``atlas`` is None and the shipped atlas is missing or malformed.
    """

    #: Rows of a patch's cavity band: darker than this fraction of the way from the darkest to
    #: the brightest row (mid-mouth columns); the band is at least ``MIN_BAND`` of the patch high.
    DARK_LEVEL = 0.35
    MIN_BAND = 0.15
    #: Lip-edge feather: this fraction of the mid-mouth opening, clipped to [min, max] pixels.
    FEATHER = (0.1, 0.8, 2.5)
    #: A portrait whose inner-lip opening ``r`` (:func:`~teller_agent.render.mouth_atlas.mouth_shape`)
    #: is at least this, and its gap at least ``OWN_MIN_GAP`` pixels, keeps its own interior.
    OWN_MIN_OPENING = 0.08
    OWN_MIN_GAP = 3.0
    #: Pixels over which the portrait's own teeth fade into the opening cavity.
    OWN_SEAM = 1.5

    def __init__(self, image: np.ndarray, landmarks: np.ndarray, atlas=None, own_interior: bool = True):
        atlas = atlas if atlas is not None else load_atlas()
        lm = np.asarray(landmarks, np.float32)
        inner = lm[list(INNER_LIPS)]
        self.rest_gap = mouth_gap(inner)
        self.rest_width = max(mouth_shape(inner)[1], 1.0)
        self.openings = atlas.openings.astype(np.float64)
        self.widths = atlas.widths.astype(np.float64)
        self.patches = _match_patches(atlas, lip_ring_lab(image, lm))
        self.bands = _dark_bands(self.patches, self.DARK_LEVEL, self.MIN_BAND)
        own = (own_interior and mouth_shape(inner)[0] >= self.OWN_MIN_OPENING
               and self.rest_gap >= self.OWN_MIN_GAP)
        #: ``(PATCH_HEIGHT, PATCH_WIDTH, 3) float32`` RGB: the portrait's own interior, or None.
        self.own = cut_patch(image, lm).astype(np.float32) if own else None

    def weights(self, r: float, w: float) -> list[tuple[int, int, float]]:
        """Blend of grid cells for opening ``r`` and relative width ``w``: ``(k, m, weight)`` with
        weights summing to 1, continuous (C1) in ``r`` and ``w``; outside the grid, the edge cells."""
        cells = []
        for_r = _axis_weights(self.openings, r)
        for_w = _axis_weights(self.widths, w)
        for k, a in for_r:
            for m, b in for_w:
                if a * b > 0:
                    cells.append((k, m, a * b))
        return cells

    def paint(self, frame: np.ndarray, inner_lips: np.ndarray) -> None:
        """Show the interior between the driven inner lips.

        Nothing is painted while the largest inner-lip gap is at most the portrait's own
        (:attr:`rest_gap`) plus half a pixel; the interior then fades in over the next 3 pixels
        (a photo with an open mouth keeps its own teeth until the mouth opens further).

        Args:
            frame: ``(S, S, 3) uint8`` RGB, modified in place inside the inner lips' bounding box.
            inner_lips: ``(8, 2)`` float driven pixel positions of landmarks 60-67.
        """
        driven_gap = mouth_gap(inner_lips)
        strength = float(np.clip((driven_gap - self.rest_gap - 0.5) / 3.0, 0.0, 1.0))
        if strength <= 0.0:
            return
        left, right = float(inner_lips[:, 0].min()), float(inner_lips[:, 0].max())
        box = _box(frame, left, right, inner_lips[:, 1].min(), inner_lips[:, 1].max())
        if box is None or right - left < 2:
            return
        x0, x1, y0, y1 = box
        r, width = mouth_shape(inner_lips)
        patch, band = None, np.zeros(2)
        for k, m, wt in self.weights(r, width / self.rest_width):
            patch = self.patches[k, m] * wt if patch is None else patch + self.patches[k, m] * wt
            band += self.bands[k, m] * wt
        xs = np.arange(x0, x1, dtype=np.float64)
        ys = np.arange(y0, y1, dtype=np.float64)[:, None]
        u, v, gap = canonical_coords(inner_lips, xs, ys)
        inside = (u >= 0) & (u <= 1)
        alpha = np.clip(v * gap + 0.5, 0, 1) * np.clip((1 - v) * gap + 0.5, 0, 1) * inside
        if not alpha.any():
            return
        # feather: a soft ramp inside the lip edges, no hard seam against the warped lips
        share, lo, hi = self.FEATHER
        feather = float(np.clip(share * gap.max(), lo, hi))
        alpha *= smoothstep(v * gap / feather) * smoothstep((1 - v) * gap / feather)
        mx = np.broadcast_to(u * PATCH_WIDTH - 0.5, v.shape).astype(np.float32)
        if self.own is not None:
            color = self._own_interior(patch, band, mx, v, gap, self.rest_gap / max(driven_gap, 1e-3), r)
        else:
            top = self.openings[-1]
            if r > top:  # wider than any real mouth in the atlas: stretch the cavity, keep the teeth
                v = _stretch_middle(v, top / r, band[0], band[1])
            my = (v * PATCH_HEIGHT - 0.5).astype(np.float32)
            color = cv2.remap(patch, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        a = (alpha * strength).astype(np.float32)[..., None]
        roi = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = np.clip(roi + (color - roi) * a + 0.5, 0, 255).astype(np.uint8)

    def _own_interior(self, patch: np.ndarray, band: np.ndarray, mx: np.ndarray, v: np.ndarray,
                      gap: np.ndarray, scale: float, r: float) -> np.ndarray:
        """Colour ``(m, n, 3) float32`` of a portrait with its own interior, opened ``1 / scale``
        times its rest gap (opening ``r``, :func:`mouth_shape`): its own interior at pixel size under
        the upper lip (upper teeth move with the upper jaw), then the atlas ``patch`` from the top of
        its cavity ``band`` down (cavity, tongue, lower teeth) over the rest of the opening; where
        that part is taller than the atlas shows it, only the cavity stretches (as for a portrait
        without its own interior) and the lower teeth keep their pixel size."""
        scale = min(scale, 1.0)
        own = cv2.remap(self.own, mx, (np.clip(v / scale, 0.0, 1.0) * PATCH_HEIGHT - 0.5).astype(np.float32),
                        cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        if scale >= 1.0 - 1e-6:
            return own
        w = np.clip((v - scale) / (1.0 - scale), 0.0, 1.0)
        # taller than the patch shows it: the lower teeth keep their pixel size, the cavity stretches
        natural = (1.0 - band[0]) * min(r, self.openings[-1]) / max((1.0 - scale) * r, 1e-6)
        if natural < 1.0:
            w = _stretch_middle(w, natural, 0.0, (band[1] - band[0]) / max(1.0 - band[0], 1e-6))
        v_low = band[0] + w * (1.0 - band[0])
        lower = cv2.remap(patch, mx, (v_low * PATCH_HEIGHT - 0.5).astype(np.float32), cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
        c = smoothstep((v - scale) * gap / self.OWN_SEAM + 0.5).astype(np.float32)[..., None]
        return own + (lower - own) * c


def _axis_weights(centres: np.ndarray, x: float) -> list[tuple[int, float]]:
    """(index, weight) of the one or two grid positions around ``x``: smoothstep across each
    interval, so the weights and their slopes are continuous in ``x``."""
    if len(centres) == 1 or x <= centres[0]:
        return [(0, 1.0)]
    if x >= centres[-1]:
        return [(len(centres) - 1, 1.0)]
    k = int(np.searchsorted(centres, x, side="right")) - 1
    f = float(smoothstep(np.float64((x - centres[k]) / (centres[k + 1] - centres[k]))))
    return [(k, 1.0 - f), (k + 1, f)]


def _dark_bands(patches: np.ndarray, level: float, min_band: float) -> np.ndarray:
    """``(K, M, 2)`` float64: for each ``(H, W, 3)`` patch of ``patches`` ``(K, M, H, W, 3)``, the
    top and bottom of its darkest band of rows as fractions of ``H`` (:class:`MouthPainter`)."""
    k, m, h, w, _ = patches.shape
    rows = patches[:, :, :, int(0.3 * w) : int(0.7 * w) + 1].mean(axis=(3, 4))  # (K, M, H) grey level
    out = np.zeros((k, m, 2))
    for a in range(k):
        for b in range(m):
            row = rows[a, b]
            dark = row <= row.min() + level * (row.max() - row.min())
            i = j = int(np.argmin(row))
            while i > 0 and dark[i - 1]:
                i -= 1
            while j < h - 1 and dark[j + 1]:
                j += 1
            top, bottom = i / h, (j + 1) / h
            grow = max(min_band - (bottom - top), 0.0) / 2
            out[a, b] = (max(top - grow, 0.0), min(bottom + grow, 1.0))
    return out


def _stretch_middle(v: np.ndarray, scale: float, keep_top: float, keep_bottom: float) -> np.ndarray:
    """Canonical rows ``v`` of a mouth opened ``1 / scale`` times wider than its patch: the patch's
    rows above ``keep_top`` and below ``keep_bottom`` keep their pixel size (``scale`` of the
    opening each), the rows between stretch over the rest."""
    top = keep_top * scale
    bottom = 1.0 - (1.0 - keep_bottom) * scale
    mid = keep_top + (v - top) * (keep_bottom - keep_top) / max(bottom - top, 1e-6)
    return np.where(v < top, v / scale, np.where(v > bottom, 1.0 - (1.0 - v) / scale, mid))


def _match_patches(atlas, ring: np.ndarray) -> np.ndarray:
    """The atlas's patches matched to a portrait whose lip ring has Lab ``ring`` ``(2, 3)`` (mean,
    std): ``(K, M, PATCH_HEIGHT, PATCH_WIDTH, 3) float32`` RGB in [0, 255] (:class:`MouthPainter`)."""
    k, m, h, w, _ = atlas.patches.shape
    lab = cv2.cvtColor(atlas.patches.reshape(-1, w, 3).astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    lab = lab.reshape(k, m, h, w, 3)
    src = atlas.ring_lab[:, :, 0][:, :, None, None, :]  # (K, M, 1, 1, 3) mean Lab of each source ring
    dst = ring[0]
    gain = np.clip((dst[0] / np.maximum(src[..., 0], 1.0)) ** 0.7, 0.6, 1.5)
    src_chroma = np.hypot(src[..., 1], src[..., 2])
    chroma = np.clip(np.hypot(dst[1], dst[2]) / np.maximum(src_chroma, 1.0), 0.0, 1.25)
    out = np.empty_like(lab)
    out[..., 0] = lab[..., 0] * gain
    for c in (1, 2):
        out[..., c] = chroma * lab[..., c] + 0.3 * (dst[c] - chroma * src[..., c])
    # a deep cavity is very dark red, not black (the sources' darkest cavities clip to black)
    deep = 1.0 - smoothstep(out[..., 0] / CAVITY_LIFT[0])
    out[..., 0] += CAVITY_LIFT[1] * deep
    out[..., 1] += CAVITY_LIFT[2] * chroma * deep
    rgb = cv2.cvtColor(out.reshape(-1, w, 3), cv2.COLOR_Lab2RGB).reshape(k, m, h, w, 3)
    return np.ascontiguousarray(np.clip(rgb * 255.0, 0, 255), dtype=np.float32)


def lid_edge(width: float) -> tuple[float, float]:
    """``(fold, feather)`` in pixels for an eye ``width`` pixels wide: how far above the upper-lid
    landmarks the closing lid's top edge sits (:data:`LID_FOLD`), and over how many pixels it
    blends into the skin above (:data:`LID_FEATHER`); at least 1.5 each."""
    return max(1.5, LID_FOLD * width), max(1.5, LID_FEATHER * width)


def paint_eyelids(frame: np.ndarray, rest_upper: np.ndarray, lid_upper: np.ndarray, lower: np.ndarray) -> None:
    """Slide the upper lid of one eye down to ``lid_upper``.

    The lid is the photo's own skin, continuous with the skin above it: its tone is the skin just
    above the lid's top edge, mirrored downward (:data:`LID_STRETCH` pixels of photo per pixel of
    lid) so that tone and light carry on across the edge, which is feathered over
    :data:`LID_FEATHER` of the eye's width; its grain is the high-pass of the skin above, moved
    down by the lid's height (no stretch, so no streaks); the photo's dark hairs (lashes, brow
    tips) are removed from both by a grey closing. The lid darkens slightly toward its edge
    (:data:`LID_SHADE`), where a soft lash line in the person's own lash colour (the darkest
    pixels along the open lid) tapers toward the corners.

    Args:
        frame: (S, S, 3) uint8 RGB, modified in place (the lid texture is read from it first).
        rest_upper: (4, 2) pixel positions of the upper lid (corner, 2 lid
            points, corner) where the warped eye has it, i.e. without expression.
        lid_upper: (4, 2) the driven upper lid; it stops at the lower lid.
        lower: (4, 2) the lower lid (corner, 2 lid points, corner).
    """
    left, right = float(rest_upper[:, 0].min()), float(rest_upper[:, 0].max())
    width = right - left
    if width < 2:
        return
    xs = np.arange(np.floor(left), np.ceil(right) + 1, dtype=np.float32)
    y_rest = smooth_chain(rest_upper, xs)
    y_low = smooth_chain(lower, xs)
    y_lid = np.minimum(np.maximum(smooth_chain(lid_upper, xs), y_rest), np.maximum(y_low, y_rest))
    travel = y_lid - y_rest
    if travel.max() < 0.3:
        return
    # The photo's own lashes sit just above the upper-lid landmarks: start the lid above them.
    fold, feather = lid_edge(width)
    top_min = float(y_rest.min()) - fold - 1.0
    box = _box(frame, left, right, top_min - 0.5 * feather, y_lid.max() + 2)
    if box is None:
        return
    x0, x1, y0, y1 = box
    sel = (xs >= x0) & (xs < x1)
    xs, y_rest, y_lid, travel = xs[sel], y_rest[sel][None], y_lid[sel][None], travel[sel][None]
    ys = np.arange(y0, y1, dtype=np.float32)[:, None]
    inside = ((xs >= left) & (xs <= right))[None, :]
    top = y_rest - fold - 1.0
    cover = smoothstep((ys - top + 0.5 * feather) / feather) * np.clip(y_lid + 0.5 - ys, 0, 1) * inside
    cover *= smoothstep(travel / max(1.5, 0.12 * width))  # the lid fades in toward the corners
    span = np.maximum(y_lid - top, 1.0)
    # the person's lash colour, read before anything is painted
    ring = frame[max(int(np.floor((y_rest - fold).min())), 0):int(np.ceil(y_rest.max())) + 1, x0:x1]
    ring = ring.reshape(-1, 3).astype(np.float32)
    if len(ring):
        darkest = np.argpartition(ring.sum(1), len(ring) // 10)[: len(ring) // 10 + 1]
        lash_rgb = ring[darkest].mean(0)
    else:
        lash_rgb = _LASH
    # the skin above the lid (the rows the lid is drawn from), without hairs: tone (blurred) and
    # grain (high-pass)
    by0 = max(int(np.floor((top - span).min())) - 2, 0)
    by1 = min(int(np.ceil(top.max())) + 3, frame.shape[0])
    if by1 - by0 < 2:
        return
    band = frame[by0:by1, x0:x1]
    k = max(3, int(round(LID_HAIR_CLOSING * width)) | 1)
    band = cv2.morphologyEx(band, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    band = band.astype(np.float32)
    tone = cv2.GaussianBlur(band, (0, 0), max(1.0, 0.04 * width))
    grain = band - cv2.GaussianBlur(band, (0, 0), 1.5)
    mx = np.broadcast_to(xs[None, :] - x0, cover.shape).astype(np.float32)
    tone_y = top - np.maximum(ys - top, 0) * LID_STRETCH  # mirrored about the top edge
    color = cv2.remap(tone, mx, (tone_y - by0).astype(np.float32), cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    color += cv2.remap(grain, mx, (ys - span - by0).astype(np.float32), cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    toward_edge = np.clip((ys - top) / span, 0, 1)
    color *= (1.0 - LID_SHADE * toward_edge**2)[..., None]
    u = np.clip((xs - left) / width, 0, 1)[None, :]
    taper = np.sqrt(np.clip(np.sin(np.pi * u), 0, 1))
    lash_half = max(0.6, LASH_WIDTH * width)
    d = (ys - (y_lid - 0.3 * lash_half)) / lash_half
    lash = np.exp(-0.5 * d * d) * taper * np.clip(travel / 2.0, 0, 1)
    color += (lash_rgb - color) * (0.85 * lash)[..., None]
    alpha = cover[..., None]
    roi = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = np.clip(roi + (color - roi) * alpha, 0, 255).astype(np.uint8)
