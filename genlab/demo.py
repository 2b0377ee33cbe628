"""Gradio demo over every pipeline folder in a directory, with no per-method code.

A folder is a pipeline when it has model_index.json. What it accepts is read from the signature of its class's
__call__ (no weights are loaded for that), its acceleration switch from the class attributes `acceleration_*`
(see `GenlabPipeline`), its sampling defaults and baseline from training_info.json. A method shows up in the demo
just by being saved in the directory.
"""

from __future__ import annotations

import inspect
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import PIL.Image
import torch

from . import registry
from .errors import GenlabError, check_int, check_number, first_line
from .eval.harness import time_round_robin
from .files import read_json
from .pipelines.loading import call_parameters, load_pipeline, training_info
from .utils import image_grid, save_video, upscale, video_grid

log = logging.getLogger(__name__)

DISPLAY_SIZE = 384  # samples are 16-32 px: upscale (nearest) so they are visible in the page
FPS = 4.0  # frames per second of the GIF a video pipeline's clips are shown as
COMPARE_TRICK, COMPARE_BASELINE = "trick", "baseline"
# The inputs the page has a control for; a pipeline gets those its __call__ accepts.
INPUTS = ("class_labels", "prompt", "num_frames", "num_inference_steps", "guidance_scale", "temperature")
# The generate/compare endpoints' parameters, as API clients see them (then one per acceleration argument).
FORM_FIELDS = ("pipeline", "class_label", "prompt", "num_frames", "num_inference_steps", "guidance_scale",
               "temperature", "seed", "batch", "use_acceleration")


@dataclass
class PipelineSpec:
    """What the page needs to know about one pipeline folder, read without loading its weights."""

    name: str
    path: str
    class_name: str
    params: dict  # name -> inspect.Parameter of the class's __call__
    class_names: list = field(default_factory=list)  # empty: labels are plain ids 0..num_classes-1
    num_classes: int | None = None
    sample: dict = field(default_factory=dict)  # the recipe's sampling defaults (training_info "sample")
    baseline: str | None = None  # folder name of the baseline pipeline, when that folder exists
    acceleration_label: str = ""
    acceleration_choices: dict = field(default_factory=dict)
    acceleration_off: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    conditioning: tuple = ()  # "class_labels" and/or "prompt", as the pipeline class says for these components

    def default(self, name: str, fallback=None):
        """The recipe's sampling default for a call argument, else the signature's default."""
        if self.sample.get(name) is not None:
            return self.sample[name]
        param = self.params.get(name)
        if param is not None and param.default is not inspect.Parameter.empty and param.default is not None:
            return param.default
        return fallback


def is_pipeline_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "model_index.json"))


def discover(pipelines_dir: str) -> list[str]:
    """Sorted names of the sub-folders of `pipelines_dir` that hold a model_index.json."""
    if not os.path.isdir(pipelines_dir):
        return []
    return sorted(n for n in os.listdir(pipelines_dir) if is_pipeline_dir(os.path.join(pipelines_dir, n)))


def describe(path: str) -> PipelineSpec:
    """Read a folder's class, call signature, class names, sampling defaults and baseline (no weights loaded)."""
    path = os.path.normpath(path)
    if not is_pipeline_dir(path):
        raise GenlabError(f"{path} is not a pipeline folder: model_index.json is missing")
    index = read_json(os.path.join(path, "model_index.json"), path)
    class_name = index.get("_class_name")
    cls = registry.pipeline_class(str(class_name))
    if cls is None:
        raise GenlabError(f"{path}: unknown pipeline class {class_name!r} (registered: {registry.pipeline_names()})")
    params = call_parameters(cls)

    # Class names live in the conditioning component's config; scan the components listed in model_index.json,
    # that one first, so a differently named one also works.
    class_names, num_classes, condition_config = [], None, None
    first = getattr(cls, "conditioning_component", "transformer")
    components = sorted((k for k, v in index.items() if isinstance(v, list)), key=lambda k: k != first)
    if first is None:  # the pipeline's own config (model_index.json) says how it is conditioned
        condition_config = index
        class_names = [str(c) for c in index.get("class_names") or []]
        num_classes = index.get("num_classes")
        components = []
    for comp in components:
        config_file = os.path.join(path, comp, "config.json")
        if os.path.isfile(config_file):
            config = read_json(config_file, path)
            if comp == first:
                condition_config = config
            if "num_classes" in config or "class_names" in config:
                class_names = [str(c) for c in config.get("class_names") or []]
                num_classes = config.get("num_classes", len(class_names) or None)
                break

    try:
        info = training_info(path)
    except (OSError, ValueError) as e:
        raise GenlabError(f"cannot read {path}/training_info.json: {e}") from None
    baseline = info.get("baseline")
    if not (baseline and is_pipeline_dir(os.path.join(os.path.dirname(path), baseline))):
        baseline = None  # no baseline named, or its folder is not shipped (yet)
    return PipelineSpec(
        name=os.path.basename(path), path=path, class_name=class_name, params=params, class_names=class_names,
        num_classes=num_classes, sample=dict(info.get("sample") or {}), baseline=baseline,
        acceleration_label=getattr(cls, "acceleration_label", "") or "",
        acceleration_choices=dict(getattr(cls, "acceleration_choices", {}) or {}),
        acceleration_off=dict(getattr(cls, "acceleration_off", {}) or {}), info=info,
        conditioning=tuple(cls.conditioning_for(condition_config)))


def compare_modes(spec: PipelineSpec) -> list[tuple[str, str]]:
    """(label, value) of the comparisons this pipeline offers: its trick on vs off, and/or it vs its baseline."""
    modes = []
    if spec.acceleration_choices:
        modes.append((f"{spec.acceleration_label.split(' (')[0] or 'acceleration'}: on vs off", COMPARE_TRICK))
    if spec.baseline:
        modes.append((f"{spec.name} vs baseline {spec.baseline}", COMPARE_BASELINE))
    return modes


def _number(value, name: str) -> float:
    """A finite number from a form field (which may be None or text), else a GenlabError naming the field."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise GenlabError(f"{name} must be a number, got {value!r}") from None
    return check_number(number, name)


def _in_range(value, name: str, lo: int, hi: int) -> int:
    return check_int(_number(value, name), name, minimum=lo, maximum=hi, allow_integral_float=True)


class Demo:
    """The page's logic without Gradio: discovery, a cache of loaded pipelines, input checks, generate, compare."""

    def __init__(self, pipelines_dir: str = "pipelines", max_steps: int = 100, max_batch: int = 16,
                 compare_repeats: int = 3):
        self.pipelines_dir = pipelines_dir
        self.compare_repeats = check_int(compare_repeats, "compare_repeats", minimum=1)
        self.max_steps, self.max_batch = max_steps, max_batch
        self.cache: dict[str, object] = {}  # folder path -> loaded pipeline (loaded on first use)
        self.warmed: set = set()  # (folder, settings) already run once, see `warm_up`
        self.out_dir = tempfile.mkdtemp(prefix="genlab-demo-")  # Gradio serves files under the temp dir

    def names(self) -> list[str]:
        return discover(self.pipelines_dir)

    def spec(self, name) -> PipelineSpec:
        """The spec of the folder `name` in the pipelines directory; unknown names give a readable error."""
        if name not in self.names():  # only listed folders: no path tricks such as "../x"
            raise GenlabError(f"unknown pipeline {name!r}; available: {', '.join(self.names()) or 'none'}")
        return describe(os.path.join(self.pipelines_dir, name))

    def pipeline(self, spec: PipelineSpec):
        if spec.path not in self.cache:
            self.cache[spec.path] = load_pipeline(spec.path)  # GenlabError with one line when broken
        return self.cache[spec.path]

    def controls(self, name) -> dict:
        """Which controls the page shows for `name`, with their defaults (Gradio-free, so it is unit-testable)."""
        spec = self.spec(name)
        p = spec.params
        labels = spec.class_names or [str(i) for i in range(spec.num_classes or 0)]
        return {
            "class_labels": {"visible": "class_labels" in spec.conditioning, "choices": labels,
                             "value": labels[0] if labels else None},
            "prompt": {"visible": "prompt" in spec.conditioning},
            "num_frames": {"visible": "num_frames" in p, "value": spec.default("num_frames")},
            "num_inference_steps": {"visible": "num_inference_steps" in p,
                                    "value": min(self.max_steps, spec.default("num_inference_steps", 30))},
            "guidance_scale": {"visible": "guidance_scale" in p, "value": spec.default("guidance_scale", 1.0)},
            "temperature": {"visible": "temperature" in p, "value": spec.default("temperature", 1.0)},
            "acceleration": {"visible": bool(spec.acceleration_choices), "label": spec.acceleration_label,
                             "choices": spec.acceleration_choices},
            "compare": compare_modes(spec),
            "caption": {"visible": callable(getattr(registry.pipeline_class(spec.class_name), "caption", None))},
        }

    def call_kwargs(self, spec: PipelineSpec, inputs: dict, batch=1, seed=0, acceleration=None) -> dict:
        """Check the form's values and turn those the pipeline accepts into call arguments.

        acceleration: None/False = the plain path (`acceleration_off`), True = the first allowed values, or a dict
        call argument -> chosen value (each must be one of `acceleration_choices`).
        """
        p = spec.params
        batch = _in_range(batch, "batch size", 1, self.max_batch)
        kwargs = {}
        conditioning = spec.conditioning
        if "class_labels" in conditioning:
            label = inputs.get("class_labels")
            if label is None or str(label).strip() == "":
                raise GenlabError("pick a class label")
            if isinstance(label, float) and label == int(label):
                label = int(label)  # a number field sends 3.0
            kwargs["class_labels"] = [label] * batch  # the pipeline maps names/ids and checks the range
        if "prompt" in conditioning:
            prompt = str(inputs.get("prompt") or "").strip()
            if not prompt:
                raise GenlabError("the prompt is empty: type what to generate")
            kwargs["prompt"] = prompt
        if "class_labels" not in conditioning and batch > 1:  # the batch for pipelines without labels
            if "num_images_per_prompt" in p:
                kwargs["num_images_per_prompt"] = batch
            elif "batch_size" in p:
                kwargs["batch_size"] = batch
            elif "prompt" in kwargs:
                kwargs["prompt"] = [kwargs["prompt"]] * batch
        if "num_frames" in p and inputs.get("num_frames") not in (None, ""):  # empty: the model's own length
            kwargs["num_frames"] = _in_range(inputs.get("num_frames"), "num_frames", 1, 256)
        if "num_inference_steps" in p:
            kwargs["num_inference_steps"] = _in_range(inputs.get("num_inference_steps"), "num_inference_steps",
                                                      1, self.max_steps)
        if "guidance_scale" in p:
            kwargs["guidance_scale"] = _number(inputs.get("guidance_scale"), "guidance_scale")
        if "temperature" in p:
            kwargs["temperature"] = _number(inputs.get("temperature"), "temperature")
            if kwargs["temperature"] < 0:
                raise GenlabError(f"temperature must be >= 0, got {kwargs['temperature']}")
        # Other recipe sampling defaults the pipeline accepts (e.g. top_k) are used as trained.
        for key, value in spec.sample.items():
            if key in p and key not in kwargs and key not in INPUTS:
                kwargs[key] = value
        kwargs.update(self._acceleration_kwargs(spec, acceleration))
        if "generator" in p:
            kwargs["generator"] = torch.Generator().manual_seed(_in_range(seed, "seed", 0, 2**63 - 1))
        return kwargs

    @staticmethod
    def _acceleration_kwargs(spec: PipelineSpec, acceleration) -> dict:
        if not spec.acceleration_choices:
            return {}
        if not acceleration:
            return dict(spec.acceleration_off)
        chosen = acceleration if isinstance(acceleration, dict) else {}
        kwargs = {}
        for arg, allowed in spec.acceleration_choices.items():
            value = chosen.get(arg)
            if value is None:
                kwargs[arg] = allowed[0]
                continue
            # Form fields may send 4 as "4" or 4.0: match on the text, pass the declared value.
            match = [a for a in allowed if str(a) == str(value) or str(a) == str(value).removesuffix(".0")]
            if not match:
                raise GenlabError(f"{arg} must be one of {allowed}, got {value!r}")
            kwargs[arg] = match[0]
        return kwargs

    def warm_up(self, spec: PipelineSpec, kwargs: dict):
        """Run a configuration once, untimed, the first time it is compared: its one-time costs (torch's first
        call, DDT solving and storing a statdp schedule) would otherwise make the speed ratio meaningless."""
        key = (spec.path, repr(sorted((k, v) for k, v in kwargs.items() if k not in ("generator", "class_labels",
                                                                                      "prompt"))))
        if key in self.warmed:
            return
        small = dict(kwargs, generator=torch.Generator().manual_seed(0))
        for arg in ("class_labels", "prompt"):  # a batch of one is enough to warm up
            if isinstance(small.get(arg), list):
                small[arg] = small[arg][:1]
        self.pipeline(spec)(**small)
        self.warmed.add(key)

    def _run(self, spec: PipelineSpec, kwargs: dict, stem: str) -> tuple[str, float]:
        """Call the (loaded) pipeline, time the call, write the output as PNG grid or GIF; return (file, seconds)."""
        pipe = self.pipeline(spec)
        start = time.perf_counter()
        out = pipe(**kwargs)
        seconds = time.perf_counter() - start
        return self.save_output(out, stem), seconds

    def save_output(self, out, stem: str) -> str:
        """Images -> one upscaled PNG grid; videos (an output with `.frames`) -> one animated GIF of all clips."""
        path = os.path.join(self.out_dir, f"{stem}-{uuid.uuid4().hex[:8]}")
        frames = getattr(out, "frames", None)
        if frames is not None:  # GenlabVideoOutput: one list of PIL frames per clip, played side by side
            grid = video_grid([list(clip) for clip in frames])
            return save_video([upscale(f, DISPLAY_SIZE) for f in grid], path + ".gif", FPS)
        images = out.images if hasattr(out, "images") else out[0]
        upscale(image_grid(list(images)), DISPLAY_SIZE).save(path + ".png")
        return path + ".png"

    def generate(self, name, inputs: dict, batch=1, seed=0, acceleration=None) -> tuple[str, str]:
        """One run: returns (output file, status text)."""
        spec = self.spec(name)
        kwargs = self.call_kwargs(spec, inputs, batch, seed, acceleration)
        self.pipeline(spec)  # load first, so the time shown is sampling only
        path, seconds = self._run(spec, kwargs, spec.name)
        return path, f"{spec.name}: {seconds:.2f} s"

    def caption(self, name, image) -> str:
        """Caption an uploaded image (a PIL image or a file path) with a pipeline that can (`pipe.caption`)."""
        spec = self.spec(name)
        if not self.controls(name)["caption"]["visible"]:
            raise GenlabError(f"{spec.name} ({spec.class_name}) does not caption images")
        if image is None:
            raise GenlabError("upload an image to caption")
        if isinstance(image, str):
            try:
                image = PIL.Image.open(image)
                image.load()
            except (OSError, ValueError) as e:
                raise GenlabError(f"cannot read the uploaded image: {first_line(e)}") from None
        start = time.perf_counter()
        (text,) = self.pipeline(spec).caption(image)
        return f"**caption:** {text or '(empty)'} · {spec.name}: {time.perf_counter() - start:.2f} s"

    def compare(self, name, mode, inputs: dict, batch=1, seed=0, acceleration=None) -> dict:
        """Two runs on the same seed: files a/b, labels, seconds and the speed ratio B/A, and the timing text."""
        spec = self.spec(name)
        modes = {value: label for label, value in compare_modes(spec)}
        if not modes:
            raise GenlabError(f"{spec.name} has no acceleration switch and no baseline to compare with")
        mode = mode or next(iter(modes))
        if mode not in modes:
            raise GenlabError(f"{spec.name} cannot compare {mode!r}; it offers: {', '.join(modes)}")
        if mode == COMPARE_TRICK:  # the trick with the chosen settings vs the plain path, same pipeline
            spec_a = spec_b = spec
            kwargs_a = self.call_kwargs(spec, inputs, batch, seed, acceleration or True)
            kwargs_b = self.call_kwargs(spec, inputs, batch, seed, None)
            label_a, label_b = f"{spec.acceleration_label.split(' (')[0] or 'acceleration'} on", "off"
        else:  # the method (its switch as set) vs its baseline folder on the plain path
            spec_a, spec_b = spec, self.spec(spec.baseline)
            kwargs_a = self.call_kwargs(spec_a, inputs, batch, seed, acceleration)
            kwargs_b = self.call_kwargs(spec_b, inputs, batch, seed, None)
            label_a, label_b = spec_a.name, f"baseline {spec_b.name}"
        self.warm_up(spec_a, kwargs_a)  # load and warm up both before timing either
        self.warm_up(spec_b, kwargs_b)
        seed_value = _in_range(seed, "seed", 0, 2**63 - 1)
        outputs = {}

        def timed(side, spec_, kwargs):
            pipe = self.pipeline(spec_)

            def call():  # a fresh generator with the same seed on every repeat: every repeat draws the same samples
                outputs[side] = pipe(**dict(kwargs, generator=torch.Generator().manual_seed(seed_value)))
            return call

        calls = {"a": timed("a", spec_a, kwargs_a), "b": timed("b", spec_b, kwargs_b)}
        _, timing = time_round_robin(calls, self.compare_repeats, warmup=False)
        path_a = self.save_output(outputs["a"], f"{spec_a.name}-a")
        path_b = self.save_output(outputs["b"], f"{spec_b.name}-b")
        time_a, time_b = timing["a"].median, timing["b"].median
        ratio = time_b / max(time_a, 1e-9)
        (a_lo, a_hi), (b_lo, b_hi) = timing["a"].spread, timing["b"].spread
        text = (f"**{label_a}**: {time_a:.2f} s ({a_lo:.2f}-{a_hi:.2f}) · **{label_b}**: {time_b:.2f} s "
                f"({b_lo:.2f}-{b_hi:.2f}) · speed ratio B/A = **{ratio:.2f}×** ({'A' if ratio >= 1 else 'B'} is "
                f"faster); median (min-max) of {self.compare_repeats} interleaved runs after a warm-up")
        return {"a": path_a, "b": path_b, "label_a": label_a, "label_b": label_b, "time_a": time_a,
                "time_b": time_b, "spread_a": timing["a"].spread, "spread_b": timing["b"].spread, "ratio": ratio,
                "text": text}


def _error_text(e: Exception) -> str:
    """One readable line for the page; unexpected errors are logged with their traceback for the developer."""
    if not isinstance(e, GenlabError):
        log.exception("demo: unexpected error")
    prefix = "" if isinstance(e, GenlabError) else f"{type(e).__name__}: "
    return f"**Error:** {prefix}{first_line(e, 500)}"


def named(handler, names):
    """Give a *args handler the named signature Gradio reads for its API (and a trailing Progress it injects)."""
    import gradio as gr

    params = [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD) for n in names]
    params.append(inspect.Parameter("progress", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    default=gr.Progress(track_tqdm=True)))
    handler.__signature__ = inspect.Signature(params)
    return handler


def build_app(pipelines_dir: str = "pipelines", max_steps: int = 100, max_batch: int = 16):
    """The Gradio Blocks page over every pipeline folder in `pipelines_dir`."""
    import gradio as gr

    demo = Demo(pipelines_dir, max_steps, max_batch)
    names = demo.names()
    # One dropdown per acceleration argument that any genlab pipeline class declares; each pipeline shows its own.
    accel_args = {}
    for cls in registry.pipeline_classes():
        for arg, allowed in getattr(cls, "acceleration_choices", {}).items():
            accel_args.setdefault(arg, list(allowed))

    with gr.Blocks(title="genlab demo") as app:
        gr.Markdown(f"# genlab demo\nEvery pipeline folder in `{pipelines_dir}`; pick one and generate. "
                    "Compare runs two configurations on the same seed.")
        with gr.Row():
            with gr.Column(scale=1):
                pipeline = gr.Dropdown(names, value=names[0] if names else None, label="pipeline",
                                       elem_id="pipeline")
                about = gr.Markdown(label="about", elem_id="about")
                # allow_custom_value: typed ids / API values reach our check, which gives the readable message.
                first_labels = demo.controls(names[0])["class_labels"]["choices"] if names else []
                class_label = gr.Dropdown(first_labels, value=first_labels[0] if first_labels else None, label="class",
                                          allow_custom_value=True, elem_id="class_label")
                prompt = gr.Textbox(label="prompt", visible=False, elem_id="prompt")
                num_frames = gr.Number(None, label="frames (empty: the trained length)", precision=0, visible=False,
                                       elem_id="num_frames")
                steps = gr.Number(30, label=f"inference steps (1-{max_steps})", precision=0, elem_id="steps")
                guidance = gr.Number(3.0, label="guidance scale (CFG)", elem_id="guidance")
                temperature = gr.Number(1.0, label="temperature", visible=False, elem_id="temperature")
                with gr.Row():
                    seed = gr.Number(0, label="seed", precision=0, elem_id="seed")
                    batch = gr.Slider(1, max_batch, value=4, step=1, label="batch", elem_id="batch")
                accel_on = gr.Checkbox(False, label="use acceleration", visible=False, elem_id="accel_on")
                accel_dds = [gr.Dropdown(allowed, value=allowed[0], label=arg, visible=False,
                                         allow_custom_value=True, elem_id=f"accel_{arg}")
                             for arg, allowed in accel_args.items()]
                generate_btn = gr.Button("Generate", variant="primary", elem_id="generate")
                # Every mode is a valid value from the start (API calls are checked against these); the page
                # narrows the choices to what the selected pipeline offers.
                compare_mode = gr.Radio([("acceleration on vs off", COMPARE_TRICK),
                                         ("method vs baseline", COMPARE_BASELINE)], label="compare", visible=False,
                                        elem_id="compare_mode")
                compare_btn = gr.Button("Compare", visible=False, elem_id="compare")
                caption_image = gr.Image(type="pil", label="image to caption", visible=False,
                                         elem_id="caption_image")
                caption_btn = gr.Button("Caption", visible=False, elem_id="caption")
            with gr.Column(scale=2):
                status = gr.Markdown(label="status", elem_id="status")
                output = gr.Image(type="filepath", label="output", elem_id="output")
                with gr.Row():
                    output_a = gr.Image(type="filepath", label="A", visible=False, elem_id="output_a")
                    output_b = gr.Image(type="filepath", label="B", visible=False, elem_id="output_b")

        def on_select(name):
            """Show the controls the selected pipeline accepts, with its recipe's defaults."""
            try:
                c = demo.controls(name)
                spec = demo.spec(name)
            except Exception as e:  # noqa: BLE001  e.g. a corrupt folder: say so, hide what cannot be used
                hidden = [gr.update(visible=False)] * (7 + len(accel_dds))
                return [_error_text(e), *hidden, gr.update(choices=[], value=None, visible=False),
                        gr.update(visible=False), gr.update(visible=False), gr.update(visible=False)]
            about_text = f"`{spec.class_name}`"
            if spec.info.get("parameters"):
                about_text += f" · {spec.info['parameters'] / 1e6:.2f}M parameters"
            if spec.baseline:
                about_text += f" · baseline: `{spec.baseline}`"
            label_c = c["class_labels"]
            accel = c["acceleration"]
            accel_updates = [gr.update(visible=arg in accel["choices"], choices=accel["choices"].get(arg, []),
                                       value=(accel["choices"].get(arg) or [None])[0]) for arg in accel_args]
            modes = c["compare"]
            return [
                about_text,
                gr.update(visible=label_c["visible"], choices=label_c["choices"], value=label_c["value"]),
                gr.update(visible=c["prompt"]["visible"]),
                gr.update(visible=c["num_frames"]["visible"], value=c["num_frames"]["value"]),
                gr.update(visible=c["num_inference_steps"]["visible"], value=c["num_inference_steps"]["value"]),
                gr.update(visible=c["guidance_scale"]["visible"], value=c["guidance_scale"]["value"]),
                gr.update(visible=c["temperature"]["visible"], value=c["temperature"]["value"]),
                gr.update(visible=accel["visible"], value=False, label=f"use {accel['label']}"),
                *accel_updates,
                gr.update(visible=bool(modes), choices=modes, value=modes[0][1] if modes else None),
                gr.update(visible=bool(modes)),
                gr.update(visible=c["caption"]["visible"]),
                gr.update(visible=c["caption"]["visible"]),
            ]

        select_outputs = [about, class_label, prompt, num_frames, steps, guidance, temperature, accel_on, *accel_dds,
                          compare_mode, compare_btn, caption_image, caption_btn]
        form = [pipeline, class_label, prompt, num_frames, steps, guidance, temperature, seed, batch, accel_on]

        def unpack(args):
            """The handler's positional values (in FORM_FIELDS order, then the acceleration dropdowns) -> (name,
            inputs, batch, seed, use the trick, its chosen values)."""
            name, label, text, frames, n_steps, cfg, temp, seed_value, batch_value, use = args[:10]
            inputs = dict(zip(INPUTS, (label, text, frames, n_steps, cfg, temp)))
            return name, inputs, batch_value, seed_value, use, dict(zip(accel_args, args[10:]))

        # The endpoints return plain values (file paths, text), so API clients get no Gradio update dicts; an error
        # comes back as the one-line status text. Their parameters are named (see `named`), so `view_api()` reads
        # pipeline, class_label, ... rather than param_0, param_1, ...
        def on_generate(*args):
            """Generate: (image file, status line); an error becomes the status line."""
            try:
                name, inputs, batch_value, seed_value, use, chosen = unpack(args[:-1])  # the last one is progress
                return demo.generate(name, inputs, batch_value, seed_value, chosen if use else None)
            except Exception as e:  # noqa: BLE001  the page shows one line, never a traceback
                return None, _error_text(e)

        def on_compare(mode, *args):
            """Compare: (file A, file B, timing text with the speed ratio); an error becomes the text."""
            try:
                name, inputs, batch_value, seed_value, use, chosen = unpack(args[:-1])
                # "on vs off" runs the chosen settings whether or not the box is ticked; the baseline comparison
                # runs the method as set.
                acceleration = chosen if use or mode == COMPARE_TRICK else None
                r = demo.compare(name, mode, inputs, batch_value, seed_value, acceleration)
            except Exception as e:  # noqa: BLE001  the page shows one line, never a traceback
                return None, None, _error_text(e)
            return r["a"], r["b"], f"A = {r['label_a']}, B = {r['label_b']} (same seed)\n\n{r['text']}"

        def on_caption(name, image):
            """Caption: the status line with the caption; an error becomes the status line."""
            try:
                return demo.caption(name, image)
            except Exception as e:  # noqa: BLE001  the page shows one line, never a traceback
                return _error_text(e)

        form_names = [*FORM_FIELDS, *accel_args]
        named(on_generate, form_names)
        named(on_compare, ["compare_mode", *form_names])

        def show(single):
            """Show the single output or the A/B pair."""
            return gr.update(visible=single), gr.update(visible=not single), gr.update(visible=not single)

        def refresh(current):
            """On page load, list the folders again, so a pipeline saved since start-up appears."""
            found = demo.names()
            return gr.update(choices=found, value=current if current in found else (found[0] if found else None))

        pipeline.change(on_select, pipeline, select_outputs, api_name="select_pipeline")
        app.load(refresh, pipeline, pipeline, api_name=False).then(on_select, pipeline, select_outputs,
                                                                    api_name=False)
        # One concurrency group for both heavy events: a generate and a compare never run at the same time.
        pair = [output, output_a, output_b]
        generate_btn.click(on_generate, form + accel_dds, [output, status], api_name="generate",
                           concurrency_id="sampling").then(lambda: show(True), None, pair, api_name=False)
        compare_btn.click(on_compare, [compare_mode] + form + accel_dds, [output_a, output_b, status],
                          api_name="compare", concurrency_id="sampling").then(lambda: show(False), None, pair,
                                                                              api_name=False)
        caption_btn.click(on_caption, [pipeline, caption_image], status, api_name="caption",
                          concurrency_id="sampling")
    app.queue(default_concurrency_limit=1)
    app.genlab_demo = demo  # the logic behind the page, for tests and scripts
    return app


def launch(pipelines_dir: str = "pipelines", host: str = "127.0.0.1", port: int = 7860, share: bool = False,
           **launch_kwargs):
    """Build the page over `pipelines_dir` and serve it (blocks unless prevent_thread_lock=True is passed)."""
    if not os.path.isdir(pipelines_dir):
        raise GenlabError(f"no pipelines directory at {pipelines_dir}")
    app = build_app(pipelines_dir)
    app.launch(server_name=host, server_port=port, share=share, **launch_kwargs)
    return app
