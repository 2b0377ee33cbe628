"""ETT: a VQ tokenizer (IBQ quantizer) tuned end to end with a causal language model through its codebook
embeddings (baseline: the same LM on the frozen tokenizer). The recipes and bench register here as they land."""

from ..registry import register_method

register_method(
    "ett",
    description="ETT (tokenizer tuned end to end with a causal LM through the codebook embeddings) against the same "
                "LM on a frozen tokenizer",
    components={"ETTModel": "genlab.models.ett"},
    pipelines={"ETTPipeline": "genlab.pipelines.ett"},
)
