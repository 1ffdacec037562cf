"""Tiny random-weight SDXL and FLUX pipelines built from small configs (the ``tiny`` profile).

Saved with ``save_pretrained`` and loaded back with the same ``from_pretrained`` code as the
real pipelines. The CLIP tokenizers use CLIP's real BPE vocabulary (assets/clip/); FLUX's T5
tokenizer is stood in for by Mistral's v1 SentencePiece (no T5 vocabulary ships offline).
"""
from __future__ import annotations

import json
from pathlib import Path

CLIP_VOCAB = 49408


def _clip_text_config():
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=49406, eos_token_id=49407, pad_token_id=49407, hidden_size=32,
                          intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4, num_hidden_layers=2,
                          vocab_size=CLIP_VOCAB, hidden_act="gelu", projection_dim=32, max_position_embeddings=77)


def _clip_tokenizer(folder: Path):
    from transformers import CLIPTokenizer

    from engine.models.clip_bpe import write_clip_tokenizer

    write_clip_tokenizer(folder)
    return CLIPTokenizer.from_pretrained(folder)


def build_tiny_sdxl(folder: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 1),
        projection_class_embeddings_input_dim=6 * 8 + 32, cross_attention_dim=64, norm_num_groups=1)
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        latent_channels=4, sample_size=64, norm_num_groups=1)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, steps_offset=1,
                                       beta_schedule="scaled_linear", timestep_spacing="leading")
    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=CLIPTextModel(_clip_text_config()),
        text_encoder_2=CLIPTextModelWithProjection(_clip_text_config()),
        tokenizer=_clip_tokenizer(folder / "_tok"), tokenizer_2=_clip_tokenizer(folder / "_tok"),
        unet=unet, scheduler=scheduler)
    pipe.save_pretrained(folder)


def build_tiny_flux(folder: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import AutoTokenizer, CLIPTextModel, T5Config, T5EncoderModel

    from engine.models.tiny_files import write_mistral_v1_tokenizer

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=4, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=32, axes_dims_rope=[4, 4, 8])
    t5 = T5EncoderModel(T5Config(vocab_size=32000, d_model=32, d_ff=37, d_kv=8, num_layers=2, num_heads=4))
    vae = AutoencoderKL(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(4,), layers_per_block=1,
                        latent_channels=1, norm_num_groups=1, use_quant_conv=False, use_post_quant_conv=False,
                        shift_factor=0.0609, scaling_factor=1.5035)
    t5_tok_dir = folder / "_t5tok"
    write_mistral_v1_tokenizer(t5_tok_dir, None, max_length=512)
    config = json.loads((t5_tok_dir / "tokenizer_config.json").read_text())
    config["pad_token"] = "<unk>"
    (t5_tok_dir / "tokenizer_config.json").write_text(json.dumps(config))
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                        text_encoder=CLIPTextModel(_clip_text_config()), tokenizer=_clip_tokenizer(folder / "_tok"),
                        text_encoder_2=t5, tokenizer_2=AutoTokenizer.from_pretrained(t5_tok_dir),
                        transformer=transformer)
    pipe.save_pretrained(folder)
