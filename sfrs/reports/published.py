"""Published Recall@1 of reference methods, to plot our numbers against (``--compare``)."""
from __future__ import annotations

from typing import Dict

#: Published Recall@1 (percent) of reference methods, copied from the table "Published
#: numbers people compare against (R@1)" of shared/spec/datasets.md. Sources: NetVLAD
#: (Arandjelovic et al., CVPR 2016), SFRS (Ge et al., ECCV 2020), the ResNet-18
#: re-implementations of the VG benchmark (Berton et al., CVPR 2022), MixVPR (Ali-bey et
#: al., WACV 2023), SALAD (Izquierdo & Civera, CVPR 2024), BoQ (Ali-bey et al., CVPR 2024).
PUBLISHED_R1: Dict[str, Dict[str, float]] = {
    "NetVLAD VGG16 (4096)": {"pitts30k": 84.1},
    "SFRS (4096)": {
        "pitts30k": 89.4, "pitts250k": 90.7, "tokyo247": 85.4, "msls_val": 70.0, "nordland": 16.1,
        "sped": 80.2, "amstertime": 29.7, "st_lucia": 75.9,
    },
    "ResNet-18 + GeM (benchmark re-impl.)": {"pitts30k": 77.8, "msls_val": 35.3},
    "ResNet-18 + NetVLAD (benchmark re-impl.)": {"pitts30k": 86.4, "msls_val": 47.4},
    "MixVPR R50 (4096)": {
        "pitts30k": 91.6, "pitts250k": 94.3, "msls_val": 88.2, "nordland": 58.4, "sped": 85.0, "amstertime": 40.0,
    },
    "SALAD DINOv2 (8448)": {"pitts30k": 92.5, "pitts250k": 95.1, "msls_val": 92.2, "nordland": 76.0, "sped": 92.1},
    "BoQ DINOv2 (12288)": {
        "pitts30k": 93.7, "pitts250k": 96.6, "msls_val": 93.8, "nordland": 81.3, "sped": 92.5,
        "amstertime": 63.0, "st_lucia": 99.9,
    },
}
#: entries marked "~" (approximate) in the source table.
PUBLISHED_APPROXIMATE = {
    ("MixVPR R50 (4096)", "sped"), ("MixVPR R50 (4096)", "amstertime"), ("SALAD DINOv2 (8448)", "pitts30k"),
}
PUBLISHED_SOURCE = "shared/spec/datasets.md (published R@1 of the reference methods)"
#: benchmarks served in several versions (query counts, thresholds): a published number
#: is comparable only with the version named next to it.
VERSION_DEPENDENT = ("nordland", "msls_val")
VERSION_CAVEAT = (
    "Nordland and MSLS come in several versions (query counts, thresholds): their published "
    "numbers are comparable only with the version named next to them."
)
