"""Write the tiny loader fixtures of tests/test_formats.py in the official layouts (see README.md here).

Run from anywhere: ``python tests/data/make_fixtures.py``; it rewrites voc/, owod/, coco/, dota/ and voc_files/
beside this file. Images are 32x24 solid colours; annotations are written as text in each format's own layout
(not by the writers under test), with the values the tests check by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
WIDTH, HEIGHT = 32, 24


def image(path: Path, colour: tuple[int, int, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((HEIGHT, WIDTH, 3), colour, dtype=np.uint8))


def voc_object(name: str, box: tuple[int, int, int, int], difficult: int = 0, truncated: int = 0) -> str:
    xmin, ymin, xmax, ymax = box
    return (f"\t<object>\n\t\t<name>{name}</name>\n\t\t<pose>Unspecified</pose>\n"
            f"\t\t<truncated>{truncated}</truncated>\n\t\t<difficult>{difficult}</difficult>\n\t\t<bndbox>\n\t\t\t<xmin>{xmin}</xmin>\n\t\t\t<ymin>{ymin}</ymin>\n"
            f"\t\t\t<xmax>{xmax}</xmax>\n\t\t\t<ymax>{ymax}</ymax>\n\t\t</bndbox>\n\t</object>\n")


def voc_xml(path: Path, filename: str, objects: list[str], folder: str = "VOC2007") -> None:
    """A VOC2007 annotation as the dataset ships it (folder, filename, source, size, segmented, objects)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"<annotation>\n\t<folder>{folder}</folder>\n\t<filename>{filename}</filename>\n\t<source>\n"
        "\t\t<database>The VOC2007 Database</database>\n\t\t<annotation>PASCAL VOC2007</annotation>\n"
        f"\t\t<image>flickr</image>\n\t</source>\n\t<size>\n\t\t<width>{WIDTH}</width>\n\t\t<height>{HEIGHT}</height>\n"
        f"\t\t<depth>3</depth>\n\t</size>\n\t<segmented>0</segmented>\n{''.join(objects)}</annotation>\n"
    )


def coco2voc_xml(path: Path, filename: str, objects: list[tuple[str, tuple[int, int, int, int]]]) -> None:
    """A COCO image's XML as OW-DETR's datasets/coco2voc.py writes it: filename, size, name/difficult/bndbox."""
    body = "".join(
        f"<object><name>{name}</name><difficult>0</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>" for name, b in objects
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"<annotation><filename>{filename}</filename><size><width>{WIDTH}</width>"
                    f"<height>{HEIGHT}</height><depth>3</depth></size>{body}</annotation>")


def lines(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{r}\n" for r in rows))


def make_voc(root: Path) -> None:
    for stem, colour in (("000001", (0, 0, 255)), ("000002", (0, 255, 0)), ("000003", (255, 0, 0))):
        image(root / "JPEGImages" / f"{stem}.jpg", colour)
    voc_xml(root / "Annotations" / "000001.xml", "000001.jpg",
            [voc_object("dog", (1, 1, 10, 8)), voc_object("person", (5, 6, 32, 24), difficult=1)])
    voc_xml(root / "Annotations" / "000002.xml", "000002.jpg", [])
    voc_xml(root / "Annotations" / "000003.xml", "000003.jpg", [voc_object("cat", (11, 3, 20, 22), truncated=1)])
    lines(root / "ImageSets" / "Main" / "trainval.txt", ["000001", "000002", "000003"])


def make_owod(root: Path) -> None:
    """One VOC2007 image and two COCO images (their XML with COCO names: airplane, tv) in one root, with the
    M-OWODB split files in ORE's ImageSets/Main and in ImageSets/MOWODB."""
    for stem, colour in (("000005", (10, 20, 30)), ("000000000139", (40, 50, 60)), ("000000000285", (70, 80, 90))):
        image(root / "JPEGImages" / f"{stem}.jpg", colour)
    voc_xml(root / "Annotations" / "000005.xml", "000005.jpg",
            [voc_object("person", (1, 1, 8, 20)), voc_object("truck", (10, 4, 30, 20))])
    coco2voc_xml(root / "Annotations" / "000000000139.xml", "000000000139.jpg",
                 [("airplane", (2, 2, 12, 9)), ("frisbee", (14, 3, 18, 7)), ("tv", (20, 10, 33, 25))])
    coco2voc_xml(root / "Annotations" / "000000000285.xml", "000000000285.jpg",
                 [("laptop", (3, 3, 20, 15)), ("traffic light", (25, 2, 28, 12))])
    splits = {
        "t1_train": ["000005", "000000000139"],
        "t2_train": ["000005", "000000000285"],
        "t2_ft": ["000005", "000000000139", "000000000285"],
        "all_task_test": ["000005", "000000000139", "000000000285"],
    }
    for folder in ("Main", "MOWODB"):
        for name, ids in splits.items():
            lines(root / "ImageSets" / folder / f"{name}.txt", ids)


def make_coco(root: Path) -> None:
    image(root / "val2017" / "000000000139.jpg", (0, 128, 255))
    image(root / "val2017" / "000000000285.jpg", (255, 128, 0))
    data = {
        "info": {"description": "fixture in the COCO 2017 instances format", "version": "1.0", "year": 2017},
        "licenses": [{"id": 1, "name": "CC BY 4.0", "url": ""}],
        "images": [
            {"id": 139, "file_name": "000000000139.jpg", "width": WIDTH, "height": HEIGHT, "license": 1},
            {"id": 285, "file_name": "000000000285.jpg", "width": WIDTH, "height": HEIGHT, "license": 1},
        ],
        "annotations": [
            {"id": 10, "image_id": 139, "category_id": 90, "bbox": [2.5, 3.0, 10.0, 5.5], "area": 40.1,
             "iscrowd": 0, "segmentation": [[2.5, 3.0, 12.5, 3.0, 12.5, 8.5, 2.5, 8.5]]},
            {"id": 11, "image_id": 139, "category_id": 1, "bbox": [0, 0, 32, 24], "area": 500, "iscrowd": 1,
             "segmentation": {"counts": [0, 768], "size": [HEIGHT, WIDTH]}},
            # No iscrowd and no area: read as 0 and w * h.
            {"id": 12, "image_id": 285, "category_id": 3, "bbox": [20.25, 10.0, 11.75, 14.0],
             "segmentation": [[20.25, 10.0, 32.0, 10.0, 32.0, 24.0]]},
        ],
        "categories": [
            {"supercategory": "person", "id": 1, "name": "person"},
            {"supercategory": "vehicle", "id": 3, "name": "car"},
            {"supercategory": "indoor", "id": 90, "name": "toothbrush"},
        ],
    }
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data, indent=1))


def make_dota(root: Path) -> None:
    image(root / "images" / "P0001.png", (30, 30, 30))
    image(root / "images" / "P0002.png", (60, 60, 60))
    lines(root / "labelTxt" / "P0001.txt", [
        "imagesource:GoogleEarth",
        "gsd:0.146343590398",
        "2.0 3.0 12.0 3.0 12.0 9.0 2.0 9.0 plane 0",
        "20.0 10.0 40.0 12.0 38.0 20.0 18.0 18.0 small-vehicle 1",  # sticks out on the right: clipped at x = 32
        "5 15 9 15 9 20 5 20 ship",  # no difficult field (DOTA_devkit reads it as 0)
    ])
    lines(root / "labelTxt" / "P0002.txt", ["imagesource:GoogleEarth", "gsd:0.5"])


def make_voc_files(root: Path) -> None:
    """deepforest's layout: an XML beside its image, <filename> naming a .tif while a .png of the tile ships."""
    image(root / "tile.png", (0, 90, 0))
    voc_xml(root / "tile.xml", "tile.tif", [voc_object("Tree", (1, 1, 10, 10)), voc_object("Tree", (20, 5, 32, 24))],
            folder="RGB")


def main() -> None:
    for name, make in (("voc", make_voc), ("owod", make_owod), ("coco", make_coco), ("dota", make_dota),
                       ("voc_files", make_voc_files)):
        shutil.rmtree(HERE / name, ignore_errors=True)
        make(HERE / name)


if __name__ == "__main__":
    main()
