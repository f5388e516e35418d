"""The procedural synthetic city: a VG-folder data set generated on the fly.

No real data set can be downloaded here, so every command defaults to this city. Each
split is a district of streets photographed sideways every 3 m (both sides) for the
database; queries are taken at random places along the same streets at another "time"
(light, night, season, occluders, blur, noise, compression), a few of them where the
database has no coverage. Facades reuse a small palette of styles, so places look alike
and only details disambiguate them; a query 10 m from a database image shares about half
of its view, which is what SFRS's image-to-region similarities exploit.

Modules: ``sizes`` (named sizes), ``layout`` (streets and cameras), ``facades`` (styles
and strip rendering), ``render`` (camera views and appearance), ``writer`` (file names,
manifest, atomic publication, cache location), ``city`` (putting it together).
"""
from sfrs.data.synthetic.city import cached_city_path, default_cache_dir, ensure_synthetic, generate_city
from sfrs.data.synthetic.sizes import GENERATOR_VERSION, SIZES, CitySize, SplitSize

__all__ = [
    "SIZES",
    "GENERATOR_VERSION",
    "CitySize",
    "SplitSize",
    "generate_city",
    "ensure_synthetic",
    "default_cache_dir",
    "cached_city_path",
]
