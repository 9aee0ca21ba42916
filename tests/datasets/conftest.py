"""Fixtures for the dataset tests: tiny hand-made COCO/VOC folders and a tiny
synthetic set (8 images of 96 x 96)."""
import json
import os

import cv2
import numpy as np
import pytest


def write_image(path, h, w, value=128):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img = np.full((h, w, 3), value, np.uint8)
    assert cv2.imwrite(str(path), img)


@pytest.fixture
def coco_root(tmp_path):
    """Three images (one without objects); categories with non-contiguous ids."""
    write_image(tmp_path / "images" / "a.jpg", 100, 200)
    write_image(tmp_path / "images" / "b.jpg", 60, 80)
    write_image(tmp_path / "images" / "empty.jpg", 50, 50)
    ann = dict(
        images=[dict(id=7, file_name="a.jpg", height=100, width=200),
                dict(id=9, file_name="b.jpg", height=60, width=80),
                dict(id=11, file_name="empty.jpg", height=50, width=50)],
        categories=[dict(id=5, name="dog"), dict(id=2, name="cat"), dict(id=10, name="bird")],
        annotations=[
            dict(id=1, image_id=7, category_id=5, bbox=[10, 20, 30, 40], area=1200, iscrowd=0,
                 segmentation=[[10, 20, 40, 20, 40, 60, 10, 60]]),
            dict(id=2, image_id=7, category_id=2, bbox=[100, 10, 50, 50], area=2500, iscrowd=1,
                 # uncompressed column-major RLE of x 100..150, y 10..60
                 segmentation=dict(counts=[100 * 100 + 10] + [50, 50] * 49 + [50, 5040],
                                   size=[100, 200])),
            # beyond the image: clipped to x2 = 200, y2 = 100
            dict(id=3, image_id=7, category_id=10, bbox=[180, 90, 40, 30], area=100, iscrowd=0,
                 segmentation=[[180, 90, 220, 90, 220, 120, 180, 120]]),
            # degenerate: dropped (2 of them), one warning
            dict(id=4, image_id=7, category_id=5, bbox=[5, 5, 0, 10], area=0, iscrowd=0),
            dict(id=5, image_id=9, category_id=10, bbox=[5, 5, 10, -3], area=0, iscrowd=0),
            dict(id=6, image_id=9, category_id=10, bbox=[0, 0, 80, 60], area=4800, iscrowd=0,
                 segmentation=[[0, 0, 80, 0, 80, 60, 0, 60]]),
        ])
    os.makedirs(tmp_path / "annotations")
    with open(tmp_path / "annotations" / "train.json", "w") as f:
        json.dump(ann, f, indent=1)
    return tmp_path


def write_voc_xml(path, width, height, objects, with_size=True):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    size = (f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
            if with_size else "")
    objs = "".join(
        f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin>"
        f"<ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in objects)
    with open(path, "w") as f:
        f.write(f"<annotation><filename>x.jpg</filename>{size}{objs}</annotation>")


@pytest.fixture
def voc_xml_writer():
    return write_voc_xml


@pytest.fixture
def voc_root(tmp_path):
    write_image(tmp_path / "JPEGImages" / "000001.jpg", 100, 120)
    write_image(tmp_path / "JPEGImages" / "000002.jpg", 40, 50)
    write_voc_xml(tmp_path / "Annotations" / "000001.xml", 120, 100,
                  [("dog", (1, 1, 120, 100), 0), ("person", (11, 21, 30, 40), 1),
                   ("unicorn", (5, 5, 9, 9), 0)])
    write_voc_xml(tmp_path / "Annotations" / "000002.xml", 50, 40,
                  [("cat", (3, 4, 60, 20), 0)], with_size=False)
    os.makedirs(tmp_path / "ImageSets" / "Main")
    (tmp_path / "ImageSets" / "Main" / "train.txt").write_text("000001\n000002\n")
    return tmp_path


@pytest.fixture(scope="session")
def tiny_synthetic(tmp_path_factory):
    """data_root of a generated 8-image 96 x 96 'val' split (shared by tests)."""
    from toolbox.datasets.synthetic_generation import SyntheticSpec
    from toolbox.datasets.synthetic import ensure_generated

    root = tmp_path_factory.mktemp("synthetic")
    ensure_generated(SyntheticSpec(split="val", num_images=8, image_size=96,
                                   min_object_size=10), str(root))
    return str(root)

