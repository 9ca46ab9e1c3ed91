"""Reference implementations transcribed from the official code, for tests that hold wtours to them.

Sources, at the revisions mirrored under /work/.mirror:
- facebookresearch/dino (Apache-2.0, Copyright (c) Facebook, Inc. and its affiliates): `vision_transformer.py`
  (the ViT forward, `interpolate_pos_encoding`, `get_last_selfattention`, `get_intermediate_layers`),
  `eval_video_segmentation.py` (`read_frame`, `read_seg`, `to_one_hot`, `color_normalize`, `norm_mask`,
  `restrict_neighborhood`, `label_propagation`, `extract_feature`, `eval_video_tracking_davis`),
  `visualize_attention.py` (its transform and the mass threshold), `eval_linear.py` (transforms, `LinearClassifier`,
  optimiser, schedule, train and validate loops) and `eval_knn.py` (transform, `knn_classifier`).
- davisvideochallenge/davis2017-evaluation (BSD-3-Clause, Copyright (c) 2020, DAVIS): `davis2017/metrics.py`
  (`db_eval_iou`, `f_measure`, `_seg2bmap`), `davis2017/utils.py` (`db_statistics`), `davis2017/davis.py`
  (`get_all_masks`) and `davis2017/evaluation.py` (the semi-supervised branch of `evaluate`).

Only what a CPU test needs was changed, each change marked "(test)": `.cuda()` calls dropped, the global `args`
passed as parameters, file I/O replaced by arrays where the official code reads a folder. The arithmetic is the
official code's, line for line.
"""

from __future__ import annotations

import copy
import math
import queue
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from PIL import Image
from torch.nn import functional as F

# ------------------------------------------------------------------------------ dino/vision_transformer.py


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        x = self.fc1(x)
        x = self.act(x)
        x = self.drop(x)
        x = self.fc2(x)
        x = self.drop(x)
        return x


class Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_scale=None, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = qk_scale or head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        x = self.proj_drop(x)
        return x, attn


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, norm_layer=nn.LayerNorm):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.drop_path = nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio))

    def forward(self, x, return_attention=False):
        y, attn = self.attn(self.norm1(x))
        if return_attention:
            return attn
        x = x + self.drop_path(y)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class PatchEmbed(nn.Module):
    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768):
        super().__init__()
        self.num_patches = (img_size // patch_size) * (img_size // patch_size)
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """DINO's ViT (as `vits.vit_small` etc. build it: qkv_bias, LayerNorm eps 1e-6); its parameter names equal
    timm's, so `load_state_dict(timm_model.state_dict(), strict=False)` gives the same network."""

    def __init__(self, img_size=224, patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0):
        super().__init__()
        norm_layer = partial(nn.LayerNorm, eps=1e-6)
        self.num_features = self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(img_size=img_size, patch_size=patch_size, embed_dim=embed_dim)
        num_patches = self.patch_embed.num_patches
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(p=0.0)
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm_layer) for _ in range(depth)]
        )
        self.norm = norm_layer(embed_dim)

    def interpolate_pos_encoding(self, x, w, h):
        npatch = x.shape[1] - 1
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        class_pos_embed = self.pos_embed[:, 0]
        patch_pos_embed = self.pos_embed[:, 1:]
        dim = x.shape[-1]
        w0 = w // self.patch_embed.patch_size
        h0 = h // self.patch_embed.patch_size
        w0, h0 = w0 + 0.1, h0 + 0.1
        patch_pos_embed = nn.functional.interpolate(
            patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
            scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
            mode="bicubic",
        )
        assert int(w0) == patch_pos_embed.shape[-2] and int(h0) == patch_pos_embed.shape[-1]
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)

    def prepare_tokens(self, x):
        B, nc, w, h = x.shape
        x = self.patch_embed(x)
        cls_tokens = self.cls_token.expand(B, -1, -1)
        x = torch.cat((cls_tokens, x), dim=1)
        x = x + self.interpolate_pos_encoding(x, w, h)
        return self.pos_drop(x)

    def forward(self, x):
        x = self.prepare_tokens(x)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return x[:, 0]

    def get_last_selfattention(self, x):
        x = self.prepare_tokens(x)
        for i, blk in enumerate(self.blocks):
            if i < len(self.blocks) - 1:
                x = blk(x)
            else:
                return blk(x, return_attention=True)

    def get_intermediate_layers(self, x, n=1):
        x = self.prepare_tokens(x)
        output = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if len(self.blocks) - i <= n:
                output.append(self.norm(x))
        return output


def dino_vit_from_timm(timm_model: nn.Module) -> VisionTransformer:
    """(test) DINO's ViT with the weights of a timm ViT trained at 224 px (the position table's size)."""
    patch = int(timm_model.patch_embed.patch_size[0])
    side = int(timm_model.patch_embed.grid_size[0]) * patch
    model = VisionTransformer(
        img_size=side,
        patch_size=patch,
        embed_dim=timm_model.embed_dim,
        depth=len(timm_model.blocks),
        num_heads=timm_model.blocks[0].attn.num_heads,
        mlp_ratio=timm_model.blocks[0].mlp.fc1.out_features / timm_model.embed_dim,
    )
    missing, unexpected = model.load_state_dict(timm_model.state_dict(), strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return model.eval()


# ------------------------------------------------------------------------------ dino/eval_video_segmentation.py


def read_frame(frame_dir, scale_size=(480,)):
    import cv2

    img = cv2.imread(str(frame_dir))
    ori_h, ori_w, _ = img.shape
    if len(scale_size) == 1:
        if ori_h > ori_w:
            tw = scale_size[0]
            th = (tw * ori_h) / ori_w
            th = int((th // 64) * 64)
        else:
            th = scale_size[0]
            tw = (th * ori_w) / ori_h
            tw = int((tw // 64) * 64)
    else:
        th, tw = scale_size
    img = cv2.resize(img, (tw, th))
    img = img.astype(np.float32)
    img = img / 255.0
    img = img[:, :, ::-1]
    img = np.transpose(img.copy(), (2, 0, 1))
    img = torch.from_numpy(img).float()
    img = color_normalize(img)
    return img, ori_h, ori_w


def to_one_hot(y_tensor, n_dims=None):
    if n_dims is None:
        n_dims = int(y_tensor.max() + 1)
    _, h, w = y_tensor.size()
    y_tensor = y_tensor.type(torch.LongTensor).view(-1, 1)
    n_dims = n_dims if n_dims is not None else int(torch.max(y_tensor)) + 1
    y_one_hot = torch.zeros(y_tensor.size()[0], n_dims).scatter_(1, y_tensor, 1)
    y_one_hot = y_one_hot.view(h, w, n_dims)
    return y_one_hot.permute(2, 0, 1).unsqueeze(0)


def read_seg(seg_dir, factor, scale_size=(480,)):
    seg = Image.open(seg_dir)
    _w, _h = seg.size
    if len(scale_size) == 1:
        if _w > _h:
            _th = scale_size[0]
            _tw = (_th * _w) / _h
            _tw = int((_tw // 64) * 64)
        else:
            _tw = scale_size[0]
            _th = (_tw * _h) / _w
            _th = int((_th // 64) * 64)
    else:
        _th = scale_size[1]
        _tw = scale_size[0]
    small_seg = np.array(seg.resize((_tw // factor, _th // factor), 0))
    small_seg = torch.from_numpy(small_seg.copy()).contiguous().float().unsqueeze(0)
    return to_one_hot(small_seg), np.asarray(seg)


def color_normalize(x, mean=(0.485, 0.456, 0.406), std=(0.228, 0.224, 0.225)):
    for t, m, s in zip(x, mean, std, strict=True):
        t.sub_(m)
        t.div_(s)
    return x


def norm_mask(mask):
    c, h, w = mask.size()
    for cnt in range(c):
        mask_cnt = mask[cnt, :, :]
        if mask_cnt.max() > 0:
            mask_cnt = mask_cnt - mask_cnt.min()
            mask_cnt = mask_cnt / mask_cnt.max()
            mask[cnt, :, :] = mask_cnt
    return mask


def restrict_neighborhood(h, w, size_mask_neighborhood):  # (test) args.size_mask_neighborhood as a parameter
    mask = torch.zeros(h, w, h, w)
    for i in range(h):
        for j in range(w):
            for p in range(2 * size_mask_neighborhood + 1):
                for q in range(2 * size_mask_neighborhood + 1):
                    if i - size_mask_neighborhood + p < 0 or i - size_mask_neighborhood + p >= h:
                        continue
                    if j - size_mask_neighborhood + q < 0 or j - size_mask_neighborhood + q >= w:
                        continue
                    mask[i, j, i - size_mask_neighborhood + p, j - size_mask_neighborhood + q] = 1
    return mask.reshape(h * w, h * w)  # (test) no .cuda()


def extract_feature(model, frame, return_h_w=False):
    out = model.get_intermediate_layers(frame.unsqueeze(0), n=1)[0]  # (test) no .cuda()
    out = out[:, 1:, :]
    h, w = int(frame.shape[1] / model.patch_embed.patch_size), int(frame.shape[2] / model.patch_embed.patch_size)
    dim = out.shape[-1]
    out = out[0].reshape(h, w, dim)
    out = out.reshape(-1, dim)
    if return_h_w:
        return out, h, w
    return out


def label_propagation(args, model, frame_tar, list_frame_feats, list_segs, mask_neighborhood=None):
    feat_tar, h, w = extract_feature(model, frame_tar, return_h_w=True)
    return_feat_tar = feat_tar.T
    ncontext = len(list_frame_feats)
    feat_sources = torch.stack(list_frame_feats)
    feat_tar = F.normalize(feat_tar, dim=1, p=2)
    feat_sources = F.normalize(feat_sources, dim=1, p=2)
    feat_tar = feat_tar.unsqueeze(0).repeat(ncontext, 1, 1)
    aff = torch.exp(torch.bmm(feat_tar, feat_sources) / 0.1)
    if args.size_mask_neighborhood > 0:
        if mask_neighborhood is None:
            mask_neighborhood = restrict_neighborhood(h, w, args.size_mask_neighborhood)
            mask_neighborhood = mask_neighborhood.unsqueeze(0).repeat(ncontext, 1, 1)
        aff *= mask_neighborhood
    aff = aff.transpose(2, 1).reshape(-1, h * w)
    tk_val, _ = torch.topk(aff, dim=0, k=args.topk)
    tk_val_min, _ = torch.min(tk_val, dim=0)
    aff[aff < tk_val_min] = 0
    aff = aff / torch.sum(aff, keepdim=True, axis=0)
    segs = torch.cat(list_segs)  # (test) no .cuda()
    nmb_context, C, h, w = segs.shape
    segs = segs.reshape(nmb_context, C, -1).transpose(2, 1).reshape(-1, C).T
    seg_tar = torch.mm(segs, aff)
    seg_tar = seg_tar.reshape(1, C, h, w)
    return seg_tar, return_feat_tar, mask_neighborhood


@torch.no_grad()
def eval_video_tracking_davis(args, model, frame_list, first_seg, scale_size=(480,)) -> list[np.ndarray]:
    """(test) Returns the label maps instead of writing PNGs; frames are read at ``scale_size``."""
    que = queue.Queue(args.n_last_frames)
    frame1, ori_h, ori_w = read_frame(frame_list[0], scale_size)
    frame1_feat = extract_feature(model, frame1).T
    outputs = []
    mask_neighborhood = None
    for cnt in range(1, len(frame_list)):
        frame_tar = read_frame(frame_list[cnt], scale_size)[0]
        used_frame_feats = [frame1_feat] + [pair[0] for pair in list(que.queue)]
        used_segs = [first_seg] + [pair[1] for pair in list(que.queue)]
        frame_tar_avg, feat_tar, mask_neighborhood = label_propagation(
            args, model, frame_tar, used_frame_feats, used_segs, mask_neighborhood
        )
        if que.qsize() == args.n_last_frames:
            que.get()
        seg = copy.deepcopy(frame_tar_avg)
        que.put([feat_tar, seg])
        frame_tar_avg = F.interpolate(
            frame_tar_avg, scale_factor=args.patch_size, mode="bilinear", align_corners=False,
            recompute_scale_factor=False,
        )[0]  # fmt: skip
        frame_tar_avg = norm_mask(frame_tar_avg)
        _, frame_tar_seg = torch.max(frame_tar_avg, dim=0)
        frame_tar_seg = np.array(frame_tar_seg.squeeze().cpu().numpy(), dtype=np.uint8)  # (test) .numpy()
        frame_tar_seg = np.array(Image.fromarray(frame_tar_seg).resize((ori_w, ori_h), 0))
        outputs.append(frame_tar_seg)
    return outputs


# ------------------------------------------------------------------------------ dino/visualize_attention.py


def attention_transform(image_size=(480, 480)):
    from torchvision import transforms as pth_transforms

    return pth_transforms.Compose(
        [
            pth_transforms.Resize(image_size),
            pth_transforms.ToTensor(),
            pth_transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )


def threshold_attention(attentions, threshold):
    """(test) The script's threshold block: attentions (nh, patches) -> th_attn (nh, patches) bool."""
    nh = attentions.shape[0]
    val, idx = torch.sort(attentions)
    val /= torch.sum(val, dim=1, keepdim=True)
    cumval = torch.cumsum(val, dim=1)
    th_attn = cumval > (1 - threshold)
    idx2 = torch.argsort(idx)
    for head in range(nh):
        th_attn[head] = th_attn[head][idx2[head]]
    return th_attn


def visualize_attention(model, img, patch_size, threshold=None):
    """(test) The script's body from the transformed image to ``attentions`` and ``th_attn`` on the patch grid
    (before its nearest upsampling for display)."""
    w, h = img.shape[1] - img.shape[1] % patch_size, img.shape[2] - img.shape[2] % patch_size
    img = img[:, :w, :h].unsqueeze(0)
    w_featmap = img.shape[-2] // patch_size
    h_featmap = img.shape[-1] // patch_size
    attentions = model.get_last_selfattention(img)
    nh = attentions.shape[1]
    attentions = attentions[0, :, 0, 1:].reshape(nh, -1)
    th_attn = None
    if threshold is not None:
        th_attn = threshold_attention(attentions.clone(), threshold).reshape(nh, w_featmap, h_featmap)
    return attentions.reshape(nh, w_featmap, h_featmap), th_attn


# ------------------------------------------------------------------------------ dino/eval_linear.py


def linear_train_transform(crop=224):
    from torchvision import transforms as pth_transforms

    return pth_transforms.Compose(
        [
            pth_transforms.RandomResizedCrop(crop),
            pth_transforms.RandomHorizontalFlip(),
            pth_transforms.ToTensor(),
            pth_transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )


def eval_transform(resize=256, crop=224):
    """eval_linear.py's val transform, and eval_knn.py's transform for both splits."""
    from torchvision import transforms as pth_transforms

    return pth_transforms.Compose(
        [
            pth_transforms.Resize(resize, interpolation=3),
            pth_transforms.CenterCrop(crop),
            pth_transforms.ToTensor(),
            pth_transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )


class LinearClassifier(nn.Module):
    def __init__(self, dim, num_labels=1000):
        super().__init__()
        self.num_labels = num_labels
        self.linear = nn.Linear(dim, num_labels)
        self.linear.weight.data.normal_(mean=0.0, std=0.01)
        self.linear.bias.data.zero_()

    def forward(self, x):
        x = x.view(x.size(0), -1)
        return self.linear(x)


def linear_features(model, inp, n, avgpool):
    """The feature expression of eval_linear.py's `train` and `validate_network` for a ViT."""
    with torch.no_grad():
        intermediate_output = model.get_intermediate_layers(inp, n)
        output = torch.cat([x[:, 0] for x in intermediate_output], dim=-1)
        if avgpool:
            output = torch.cat(
                (output.unsqueeze(-1), torch.mean(intermediate_output[-1][:, 1:], dim=1).unsqueeze(-1)), dim=-1
            )
            output = output.reshape(output.shape[0], -1)
    return output


# ------------------------------------------------------------------------------ dino/eval_knn.py


@torch.no_grad()
def knn_classifier(train_features, train_labels, test_features, test_labels, k, T, num_classes=1000):
    top1, top5, total = 0.0, 0.0, 0
    train_features = train_features.t()
    num_test_images, num_chunks = test_labels.shape[0], 100
    imgs_per_chunk = max(1, num_test_images // num_chunks)  # (test) max(1, ...): the script needs >= 100 images
    retrieval_one_hot = torch.zeros(k, num_classes).to(train_features.device)
    predictions_all = []  # (test) also return the predictions
    for idx in range(0, num_test_images, imgs_per_chunk):
        features = test_features[idx : min((idx + imgs_per_chunk), num_test_images), :]
        targets = test_labels[idx : min((idx + imgs_per_chunk), num_test_images)]
        batch_size = targets.shape[0]
        similarity = torch.mm(features, train_features)
        distances, indices = similarity.topk(k, largest=True, sorted=True)
        candidates = train_labels.view(1, -1).expand(batch_size, -1)
        retrieved_neighbors = torch.gather(candidates, 1, indices)
        retrieval_one_hot.resize_(batch_size * k, num_classes).zero_()
        retrieval_one_hot.scatter_(1, retrieved_neighbors.view(-1, 1), 1)
        distances_transform = distances.clone().div_(T).exp_()
        probs = torch.sum(
            torch.mul(retrieval_one_hot.view(batch_size, -1, num_classes), distances_transform.view(batch_size, -1, 1)),
            1,
        )
        _, predictions = probs.sort(1, True)
        predictions_all.append(predictions[:, 0])
        correct = predictions.eq(targets.data.view(-1, 1))
        top1 = top1 + correct.narrow(1, 0, 1).sum().item()
        top5 = top5 + correct.narrow(1, 0, min(5, k)).sum().item()
        total += targets.size(0)
    top1 = top1 * 100.0 / total
    top5 = top5 * 100.0 / total
    return top1, top5, torch.cat(predictions_all)


# ------------------------------------------------------------------------------ davis2017-evaluation


def db_eval_iou(annotation, segmentation, void_pixels=None):
    annotation = annotation.astype(bool)
    segmentation = segmentation.astype(bool)
    if void_pixels is not None:  # noqa: SIM108 (the official lines)
        void_pixels = void_pixels.astype(bool)
    else:
        void_pixels = np.zeros_like(segmentation)
    inters = np.sum((segmentation & annotation) & np.logical_not(void_pixels), axis=(-2, -1))
    union = np.sum((segmentation | annotation) & np.logical_not(void_pixels), axis=(-2, -1))
    j = inters / union
    if j.ndim == 0:
        j = 1 if np.isclose(union, 0) else j
    else:
        j[np.isclose(union, 0)] = 1
    return j


def _seg2bmap(seg):
    seg = seg.astype(bool)
    seg[seg > 0] = 1
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = seg ^ e | seg ^ s | seg ^ se
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = 0
    return b  # (test) width/height equal to the mask's: the resampling branch never runs


def f_measure(foreground_mask, gt_mask, void_pixels=None, bound_th=0.008):
    import cv2
    from skimage.morphology import disk

    if void_pixels is not None:  # noqa: SIM108 (the official lines)
        void_pixels = void_pixels.astype(bool)
    else:
        void_pixels = np.zeros_like(foreground_mask).astype(bool)
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(foreground_mask.shape))
    fg_boundary = _seg2bmap(foreground_mask * np.logical_not(void_pixels))
    gt_boundary = _seg2bmap(gt_mask * np.logical_not(void_pixels))
    fg_dil = cv2.dilate(fg_boundary.astype(np.uint8), disk(bound_pix).astype(np.uint8))
    gt_dil = cv2.dilate(gt_boundary.astype(np.uint8), disk(bound_pix).astype(np.uint8))
    gt_match = gt_boundary * fg_dil
    fg_match = fg_boundary * gt_dil
    n_fg = np.sum(fg_boundary)
    n_gt = np.sum(gt_boundary)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(fg_match) / float(n_fg)
        recall = np.sum(gt_match) / float(n_gt)
    if precision + recall == 0:
        return 0
    return 2 * precision * recall / (precision + recall)


def db_statistics(per_frame_values):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        M = np.nanmean(per_frame_values)
        O = np.nanmean(per_frame_values > 0.5)  # noqa: E741
    N_bins = 4
    ids = np.round(np.linspace(1, len(per_frame_values), N_bins + 1) + 1e-10) - 1
    ids = ids.astype(np.uint8)
    D_bins = [per_frame_values[ids[i] : ids[i + 1] + 1] for i in range(0, 4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        D = np.nanmean(D_bins[0]) - np.nanmean(D_bins[3])
    return M, O, D


def get_all_masks(mask_paths: list[Path]):
    """davis.py's `get_all_masks(sequence, separate_objects_masks=True)` over the given files."""
    masks = np.zeros((len(mask_paths), *np.array(Image.open(mask_paths[0])).shape))
    for i, path in enumerate(mask_paths):
        masks[i, ...] = np.array(Image.open(path))
    masks_void = np.zeros_like(masks)
    for i in range(masks.shape[0]):
        masks_void[i, ...] = masks[i, ...] == 255
        masks[i, masks[i, ...] == 255] = 0
    num_objects = int(np.max(masks[0, ...]))
    tmp = np.ones((num_objects, *masks.shape))
    tmp = tmp * np.arange(1, num_objects + 1)[:, None, None, None]
    masks = tmp == masks[None, ...]
    masks = masks > 0
    return masks, masks_void


def read_result_masks(paths: list[Path]):
    """results.py's `read_masks`."""
    masks = np.zeros((len(paths), *np.array(Image.open(paths[0])).shape))
    for ii, path in enumerate(paths):
        masks[ii, ...] = np.array(Image.open(path))
    num_objects = int(np.max(masks))
    tmp = np.ones((num_objects, *masks.shape))
    tmp = tmp * np.arange(1, num_objects + 1)[:, None, None, None]
    return (tmp == masks[None, ...]) > 0


def evaluate_semisupervised(annotation_paths: list[Path], result_paths: list[Path]) -> dict[str, float]:
    """evaluation.py's semi-supervised branch for one sequence (frames 1..-2 scored, no void mask), then
    evaluation_method.py's global J&F over its objects. ``result_paths`` are the predictions of frames 1..-2."""
    all_gt_masks, _ = get_all_masks(annotation_paths)
    all_gt_masks = all_gt_masks[:, 1:-1, :, :]
    all_res_masks = read_result_masks(result_paths)
    if all_res_masks.shape[0] < all_gt_masks.shape[0]:
        zero_padding = np.zeros((all_gt_masks.shape[0] - all_res_masks.shape[0], *all_res_masks.shape[1:]))
        all_res_masks = np.concatenate([all_res_masks, zero_padding], axis=0)
    j_means, f_means = [], []
    for ii in range(all_gt_masks.shape[0]):
        j_res = db_eval_iou(all_gt_masks[ii, ...], all_res_masks[ii, ...], None)
        f_res = np.array(
            [f_measure(all_res_masks[ii, t], all_gt_masks[ii, t], None) for t in range(all_gt_masks.shape[1])]
        )
        j_means.append(db_statistics(j_res)[0])
        f_means.append(db_statistics(f_res)[0])
    return {"J_mean": float(np.mean(j_means)), "F_mean": float(np.mean(f_means)),
            "JF_mean": float((np.mean(j_means) + np.mean(f_means)) / 2)}  # fmt: skip
