"""Ref-EndoVis17 / Ref-EndoVis18: referring video segmentation on EndoVis (ReSurgSAM2).

Layout (frames are PNG despite the folder name)::

    ROOT/{train,valid}/JPEGImages/seq_k/00000.png
    ROOT/{train,valid}/Annotations/seq_k/00000.png     palette id maps
    ROOT/{train,valid}/Meta/seq_k.json                 {"info": {"category": {id: name}},
                                                        "frames": {"00000": {id: {"action": a,
                                                                   "location": l, "unique": u}}}}
                                                       (variants: see :class:`RefMeta`)
    ROOT/valid/meta_expressions.json                   {"videos": {seq: {"expressions":
                                                        {exp_id: {"exp", "obj_id"}}, "frames": [...],
                                                        "first_frame": {exp_id: idx}}}}

Actions and locations in Meta are integer ids (:data:`ACTIONS`, :data:`LOCATIONS`; action 0 marks
tissue). An expression reads "<category> is|are <action>", plus " on the <location>" when the
category is not unique in the frame (Ref-EndoVis17 only); EndoVis18 tissue is just its category.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .endovis import ENDOVIS18_TISSUE_IDS, split_sequences
from .video import DatasetError, VideoList, natural_key
from .vos import ANNOTATION_DIRS, FRAME_DIRS, VOSVideo, build_vos_video, find_subdir

__all__ = [
    "ACTIONS",
    "CATEGORY_IDS",
    "LOCATIONS",
    "Expression",
    "FrameObjectInfo",
    "RefEndoVis",
    "RefMeta",
    "RefVideo",
    "build_expression",
    "load_meta_expressions",
    "shared_texts",
    "location_id",
]

ACTIONS: dict[int, str] = {
    1: "idle",
    2: "manipulating tool",
    3: "performing knot tying",
    4: "suturing tissue",
    5: "manipulating tissue",
    6: "grasping tissue",
    7: "retracting tissue",
    8: "cutting tissue",
    9: "suctioning blood",
    10: "clipping tissue",
    11: "sensing vessels",
    12: "transecting vessel",
    13: "cauterizing tissue",
}
LOCATIONS: dict[int, str] = {
    1: "bottom left",
    2: "bottom center",
    3: "bottom right",
    4: "left",
    5: "center",
    6: "right",
    7: "top left",
    8: "top center",
    9: "top right",
}
# Category vocabulary of Ref-EndoVis (name -> category id used by ReSurgSAM2).
CATEGORY_IDS: dict[str, int] = {
    "bipolar forceps": 1,
    "prograsp forceps": 2,
    "large needle driver": 3,
    "monopolar curved scissors": 4,
    "suction": 5,
    "clip applier": 6,
    "ultrasound probe": 7,
    "vessel sealer": 8,
    "grasping retractor": 9,
    "kidney-parenchyma": 10,
    "covered-kidney": 11,
    "small-intestine": 12,
}


def location_id(cx: float, cy: float, width: int, height: int) -> int:
    """Location id of a point on a 3x3 grid of the frame (1 = bottom left ... 9 = top right)."""
    col = min(2, max(0, int(3 * cx / width)))
    row = min(2, max(0, int(3 * cy / height)))  # 0 = top
    return {0: 7, 1: 4, 2: 1}[row] + col


def build_expression(category: str, action: int, location: int = 0, unique: bool = True, version: int = 17) -> str:
    """The Ref-EndoVis expression of an object (see module docstring)."""
    verb = "are" if category.endswith("s") else "is"
    if version == 18:
        if action == 0:
            return category
        return f"{category} {verb} {ACTIONS[action]}"
    if version != 17:
        raise ValueError(f"unknown Ref-EndoVis version {version!r}")
    if unique or location == 0:
        return f"{category} {verb} {ACTIONS[action]}"
    return f"{category} {verb} {ACTIONS[action]} on the {LOCATIONS[location]}"


def shared_texts(expressions: Sequence["Expression"]) -> dict[str, tuple[int, ...]]:
    """Texts that name several objects of one video: ``{text: object ids, in order of first
    mention}``. Ref-EndoVis18's grammar gives two idle instruments of one type the same
    sentence; such a text refers to all of them (EndoVis18's masks are per type). An object
    that also has a text of its own is left out of this, so its ground truth stays its own."""
    texts_of: dict[int, set[str]] = {}
    ids_of: dict[str, list[int]] = {}
    for e in expressions:
        texts_of.setdefault(int(e.obj_id), set()).add(e.text)
        ids = ids_of.setdefault(e.text, [])
        if int(e.obj_id) not in ids:
            ids.append(int(e.obj_id))
    return {t: tuple(ids) for t, ids in ids_of.items() if len(ids) > 1 and all(texts_of[k] == {t} for k in ids)}


@dataclass(frozen=True)
class FrameObjectInfo:
    """Per-frame Meta of one object: action id (0 = tissue), location id, category unique?"""

    action: int
    location: int
    unique: bool


@dataclass(frozen=True)
class RefMeta:
    """A video's Meta json: ``categories[obj_id]`` and ``frames[frame_name][obj_id]``.

    :meth:`load` accepts the category map as ``info.category`` (ReSurgSAM2's files),
    ``info.categories``, or at the top level (``category`` / ``categories``); actions and
    locations as ids or as their words (``"grasping tissue"``, ``"bottom left"``; case, ``-``
    and ``_`` ignored); ``unique`` as a bool or 0/1. Anything else raises
    :class:`DatasetError` naming the file, the key path and what was expected.
    """

    categories: dict[int, str]
    frames: dict[str, dict[int, FrameObjectInfo]]

    @classmethod
    def load(cls, path: Path) -> "RefMeta":
        try:
            raw = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"{path}: cannot read Meta json ({exc})") from exc
        return cls.from_json(raw, path)

    @classmethod
    def from_json(cls, raw: object, path: Path | str = "<Meta json>") -> "RefMeta":
        """Parse the content of a Meta json (see the class docstring); ``path`` names it in errors."""
        if not isinstance(raw, dict):
            raise DatasetError(
                f"{path}: expected a JSON object with the category map and 'frames', got {type(raw).__name__}"
            )
        key, table = _category_table(raw, path)
        cats: dict[int, str] = {}
        for k, v in table.items():
            oid = _json_int(k, path, f"{key}[{k!r}]", "an object id (an integer key)")
            if not isinstance(v, str) or not v.strip():
                raise DatasetError(f"{path}: {key}[{k!r}]: expected a category name (a non-empty string), got {v!r}")
            cats[oid] = v.strip()
        frames_raw = raw.get("frames")
        if frames_raw is None:
            frames_raw = {}
        if not isinstance(frames_raw, dict):
            raise DatasetError(
                f"{path}: frames: expected {{frame name: {{obj_id: {{action, location, unique}}}}}}, "
                f"got {type(frames_raw).__name__}"
            )
        frames: dict[str, dict[int, FrameObjectInfo]] = {}
        for fname, objs in frames_raw.items():
            where = f"frames[{fname!r}]"
            if not isinstance(objs, dict):
                raise DatasetError(f"{path}: {where}: expected {{obj_id: {{action, location, unique}}}}, got {objs!r}")
            entry = {}
            for k, v in objs.items():
                at = f"{where}[{k!r}]"
                oid = _json_int(k, path, at, "an object id (an integer key)")
                if not isinstance(v, dict):
                    raise DatasetError(f"{path}: {at}: expected {{'action', 'location', 'unique'}}, got {v!r}")
                if oid not in cats:
                    raise DatasetError(
                        f"{path}: {at} refers to object id {oid}, which {key} does not declare (declared: {sorted(cats)})"
                    )
                entry[oid] = FrameObjectInfo(
                    _vocab_id(v.get("action", 0), ACTIONS, path, f"{at}.action", "action"),
                    _vocab_id(v.get("location", 0), LOCATIONS, path, f"{at}.location", "location"),
                    _json_bool(v.get("unique", True), path, f"{at}.unique"),
                )
            frames[str(fname)] = entry
        return cls(cats, frames)

    def to_json(self) -> dict:
        return {
            "info": {"category": {str(k): v for k, v in sorted(self.categories.items())}},
            "frames": {
                f: {
                    str(k): {"action": i.action, "location": i.location, "unique": i.unique}
                    for k, i in sorted(o.items())
                }
                for f, o in self.frames.items()
            },
        }


_CATEGORY_KEYS = ("category", "categories")


def _category_table(raw: dict, path: Path | str) -> tuple[str, dict]:
    """The category map of a Meta json and its key path (``info.category`` or a variant)."""
    found: list[tuple[str, object]] = []
    info = raw.get("info")
    if isinstance(info, dict):
        found += [(f"info.{k}", info[k]) for k in _CATEGORY_KEYS if k in info]
    elif info is not None:
        raise DatasetError(f"{path}: info: expected an object holding 'category' {{obj_id: name}}, got {info!r}")
    found += [(k, raw[k]) for k in _CATEGORY_KEYS if k in raw]
    if not found:
        raise DatasetError(
            f"{path}: no category map: expected info.category {{obj_id: name}} (or 'category' at the top level); "
            f"top-level keys are {sorted(raw)}" + (f", info keys are {sorted(info)}" if isinstance(info, dict) else "")
        )
    key, table = found[0]
    for other, t in found[1:]:
        if t != table:
            raise DatasetError(f"{path}: {key} and {other} are both given and differ; keep one category map")
    if not isinstance(table, dict):
        raise DatasetError(f"{path}: {key}: expected {{obj_id: category name}}, got {table!r}")
    return key, table


def _json_int(value: object, path: Path | str, at: str, what: str) -> int:
    """An integer from a JSON key or value (``3`` or ``"3"``), else a DatasetError."""
    if isinstance(value, bool):
        raise DatasetError(f"{path}: {at}: expected {what}, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise DatasetError(f"{path}: {at}: expected {what}, got {value!r}")


def _words(text: str) -> str:
    return " ".join(text.lower().replace("-", " ").replace("_", " ").split())


def _vocab_id(value: object, vocab: dict[int, str], path: Path | str, at: str, what: str) -> int:
    """An action / location id from an id or its words; 0 (tissue / none) is allowed."""
    if isinstance(value, str) and not value.strip().lstrip("-").isdigit():
        by_words = {_words(v): k for k, v in vocab.items()}
        key = _words(value)
        if key not in by_words:
            raise DatasetError(
                f"{path}: {at}: unknown {what} {value!r}; expected an id 1..{max(vocab)} or one of "
                f"{sorted(vocab.values())}"
            )
        return by_words[key]
    k = _json_int(value, path, at, f"an {what} id (0..{max(vocab)}) or its words")
    if k != 0 and k not in vocab:
        raise DatasetError(
            f"{path}: {at}: unknown {what} id {k}; expected 0..{max(vocab)} or one of {sorted(vocab.values())}"
        )
    return k


def _json_bool(value: object, path: Path | str, at: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise DatasetError(f"{path}: {at}: expected true/false (or 1/0), got {value!r}")


@dataclass(frozen=True)
class Expression:
    """A referring expression for one object; ``first_frame`` is where it first appears."""

    exp_id: str
    text: str
    obj_id: int
    first_frame: int | None = None


def load_meta_expressions(path: Path) -> dict[str, dict]:
    """``meta_expressions.json`` -> ``{video: {"expressions": [...Expression], "frames": [...]}}``.

    Errors name the file, the key path (``videos['seq_2'].expressions['0'].obj_id``) and what
    was expected."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read meta_expressions json ({exc})") from exc
    videos = raw.get("videos") if isinstance(raw, dict) else None
    if not isinstance(videos, dict):
        got = f"top-level keys {sorted(raw)}" if isinstance(raw, dict) else f"a {type(raw).__name__}"
        raise DatasetError(f"{path}: videos: expected {{'videos': {{video: {{'expressions': ...}}}}}}, got {got}")
    out: dict[str, dict] = {}
    for vid, v in videos.items():
        at = f"videos[{vid!r}]"
        if not isinstance(v, dict):
            raise DatasetError(f"{path}: {at}: expected {{'expressions', 'frames', 'first_frame'}}, got {v!r}")
        first_raw = v.get("first_frame") or {}
        exps_raw = v.get("expressions") or {}
        if not isinstance(first_raw, dict):
            raise DatasetError(f"{path}: {at}.first_frame: expected {{exp_id: frame index}}, got {first_raw!r}")
        if not isinstance(exps_raw, dict):
            raise DatasetError(f"{path}: {at}.expressions: expected {{exp_id: {{'exp', 'obj_id'}}}}, got {exps_raw!r}")
        first = {str(k): _json_int(x, path, f"{at}.first_frame[{k!r}]", "a frame index") for k, x in first_raw.items()}
        exps = []
        for eid, e in exps_raw.items():
            ea = f"{at}.expressions[{eid!r}]"
            if not isinstance(e, dict) or "exp" not in e or "obj_id" not in e:
                raise DatasetError(f"{path}: {ea}: expected {{'exp': text, 'obj_id': id}}, got {e!r}")
            if not isinstance(e["exp"], str) or not e["exp"].strip():
                raise DatasetError(f"{path}: {ea}.exp: expected the expression text, got {e['exp']!r}")
            oid = _json_int(e["obj_id"], path, f"{ea}.obj_id", "an object id")
            exps.append(Expression(str(eid), e["exp"], oid, first.get(str(eid))))
        frames = v.get("frames") or []
        if not isinstance(frames, list):
            raise DatasetError(f"{path}: {at}.frames: expected a list of frame names, got {frames!r}")
        out[str(vid)] = {"expressions": exps, "frames": [str(f) for f in frames]}
    return out


class RefVideo(VOSVideo):
    """A Ref-EndoVis video: VOS frames/annotations plus Meta and referring expressions."""

    def __init__(self, *args, meta: RefMeta, version: int, **kw):
        super().__init__(*args, **kw)
        self.meta = meta
        self.version = version
        self._expressions: list[Expression] | None = None

    def expressions(self) -> list[Expression]:
        """Expressions from ``meta_expressions.json``, else built from Meta at first appearance."""
        if self._expressions is not None:
            return self._expressions
        out = []
        first_by_meta: dict[int, int] = {}
        for i, n in enumerate(self.frame_names):
            for k in self.meta.frames.get(n, {}):
                first_by_meta.setdefault(k, i)
        first = first_by_meta or self.first_appearance()
        for j, (k, t) in enumerate(sorted(first.items())):
            info = self.meta.frames.get(self.frame_names[t], {}).get(k, FrameObjectInfo(0, 0, True))
            text = build_expression(self.meta.categories[k], info.action, info.location, info.unique, self.version)
            out.append(Expression(str(j), text, k, t))
        self._expressions = out
        return out


class RefEndoVis(VideoList, Sequence[RefVideo]):
    """A Ref-EndoVis17/18 split. ``root`` holds ``train``/``valid`` or is a split folder itself.

    ``version`` (17 or 18) picks the expression grammar; by default it is read from the folder
    name, else inferred (tissue ids 11/12/17 mean 18). Annotation ids not declared in a video's
    Meta, and expressions about undeclared objects, raise :class:`DatasetError`.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "valid",
        *,
        version: int | None = None,
        videos: Sequence[str] | None = None,
        require_frames: bool = True,
        allow_gaps: bool = False,
    ):
        root = Path(root)
        self.split_root = root / split if (root / split).is_dir() else root
        if not self.split_root.is_dir():
            raise DatasetError(f"{root}: dataset folder does not exist")
        self.split = split
        frame_root = find_subdir(self.split_root, FRAME_DIRS)
        ann_root = find_subdir(self.split_root, ANNOTATION_DIRS)
        meta_root = self.split_root / "Meta"
        if ann_root is None:
            raise DatasetError(f"{self.split_root}: no Annotations/ folder (Ref-EndoVis layout)")
        if require_frames and frame_root is None:
            raise DatasetError(f"{self.split_root}: no JPEGImages/ folder (Ref-EndoVis layout)")
        if not meta_root.is_dir():
            raise DatasetError(f"{self.split_root}: no Meta/ folder with one <video>.json per video")
        names = sorted((d.name for d in ann_root.iterdir() if d.is_dir()), key=natural_key)
        if videos is not None:
            missing = sorted(set(videos) - set(names))
            if missing:
                raise DatasetError(f"{ann_root}: videos {missing} not found")
            names = list(videos)
        exp_path = self.split_root / "meta_expressions.json"
        self.meta_expressions = load_meta_expressions(exp_path) if exp_path.is_file() else None
        if self.meta_expressions is not None:
            unknown = sorted(set(self.meta_expressions) - set(names)) if videos is None else []
            if unknown:
                raise DatasetError(f"{exp_path}: videos {unknown} have no folder in {ann_root}")
        self.version = version or _guess_version(root)
        self.videos: list[RefVideo] = []
        for n in names:
            meta_path = _meta_path(meta_root, n)
            meta = RefMeta.load(meta_path)
            if self.version is None:
                self.version = 18 if set(meta.categories) & set(ENDOVIS18_TISSUE_IDS) else 17
            fd = frame_root / n if frame_root is not None else None
            if fd is not None and not fd.is_dir():
                raise DatasetError(f"{frame_root}: video {n!r} has annotations but no frame folder")
            v = build_vos_video(
                n,
                fd,
                ann_root / n,
                allow_gaps=allow_gaps,
                categories=meta.categories,
                allowed_ids=set(meta.categories),
                cls=RefVideo,
                meta=meta,
                version=self.version,
            )
            assert isinstance(v, RefVideo)
            bad_frames = sorted(set(meta.frames) - set(v.frame_names), key=natural_key)
            if bad_frames:
                raise DatasetError(f"{meta_path}: frames {bad_frames[:3]} are not frames of video {n!r}")
            v._expressions = self._video_expressions(n, v, meta, exp_path)
            self.videos.append(v)

    def _video_expressions(self, name: str, video: VOSVideo, meta: RefMeta, path: Path) -> list[Expression] | None:
        if self.meta_expressions is None or name not in self.meta_expressions:
            return None
        exps = self.meta_expressions[name]["expressions"]
        for e in exps:
            if e.obj_id not in meta.categories:
                raise DatasetError(
                    f"{path}: video {name!r} expression {e.exp_id!r} refers to object id {e.obj_id}, which "
                    f"Meta/{name}.json does not declare (declared: {sorted(meta.categories)})"
                )
            if e.first_frame is not None and not 0 <= e.first_frame < len(video):
                raise DatasetError(
                    f"{path}: video {name!r} expression {e.exp_id!r}: first_frame {e.first_frame} "
                    f"is outside 0..{len(video) - 1}"
                )
        return exps

    def validate(self) -> None:
        for v in self.videos:
            v.validate()

    def split_sequences(self) -> tuple[int, ...]:
        """The papers' sequence numbers for this split (Ref-EndoVis17: valid 2, 5, 6; 18: 2, 5, 9, 15)."""
        return split_sequences(self.version or 17, self.split)


def _meta_path(meta_root: Path, name: str) -> Path:
    p = meta_root / f"{name}.json"
    if p.is_file():
        return p
    alt = sorted((meta_root / name).glob("*.json")) if (meta_root / name).is_dir() else []
    if len(alt) == 1:
        return alt[0]
    raise DatasetError(f"{meta_root}: no Meta json for video {name!r} (expected {p.name})")


def _guess_version(root: Path) -> int | None:
    info = next((p / "synth_info.json" for p in (root, root.parent) if (p / "synth_info.json").is_file()), None)
    if info is not None:
        try:
            return int(json.loads(info.read_text()).get("version", 0)) or None
        except (OSError, ValueError, json.JSONDecodeError):
            return None
    root = root.resolve()
    for part in (root.name, root.parent.name):
        text = part.lower().replace("-", "").replace("_", "")
        for v in (17, 18):
            if f"endovis{v}" in text:
                return v
    return None
