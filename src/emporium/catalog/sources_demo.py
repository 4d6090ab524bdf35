"""Generated demo catalog: realistic-looking products, deterministic for a given seed.

Use :func:`emporium.catalog.sources.generate_demo`; this module holds the vocabulary and
the generator. Each leaf category carries its own brands, nouns, adjectives, attributes,
features and price range, so search, facets and price buckets behave like a real shop.
Nothing is fetched: image URLs are strings for a placeholder-image service.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from emporium.catalog.sources import DEMO_WAREHOUSES, CatalogRecord, StockRecord

OUT_OF_STOCK_SHARE = 0.10
UNRATED_SHARE = 0.10
MAX_STOCK = 200

# (name, weight): a few big sellers and a long tail, like a marketplace.
SELLERS: tuple[tuple[str, int], ...] = (
    ("Emporium Direct", 30),
    ("Northwind Traders", 15),
    ("Brightline Electronics", 12),
    ("Maple & Main", 10),
    ("Summit Outfitters", 10),
    ("Urban Nest Home", 9),
    ("Blue Harbor Goods", 8),
    ("Evergreen Market", 6),
)


@dataclass(frozen=True, slots=True)
class _Leaf:
    path: tuple[str, ...]
    brands: tuple[str, ...]
    nouns: tuple[str, ...]
    adjectives: tuple[str, ...]
    price: tuple[int, int]  # whole dollars, low and high
    features: tuple[str, ...]
    use: str  # "for ..." phrase
    attributes: tuple[tuple[str, tuple[str, ...]], ...]  # the first one names the variant
    models: tuple[str, ...]  # model-number patterns, "#" becomes a digit; () for none
    title: str  # format with {brand} {model} {adj} {noun} {variant}
    label: str  # what a book is ("novel"); "" for other products


_PRODUCT_TITLE = "{brand} {model} {adj} {noun}, {variant}"


def _split(text: str) -> tuple[str, ...]:
    # "|"-separated strings keep the vocabulary table below compact and readable.
    return tuple(part.strip() for part in text.split("|") if part.strip())


def _leaf(
    path: str,
    *,
    price: tuple[int, int],
    brands: str,
    nouns: str,
    adjectives: str,
    features: str,
    use: str,
    attributes: dict[str, str],
    models: str = "",
    title: str = _PRODUCT_TITLE,
    label: str = "",
) -> _Leaf:
    return _Leaf(
        path=tuple(p.strip() for p in path.split(">")),
        brands=_split(brands),
        nouns=_split(nouns),
        adjectives=_split(adjectives),
        price=price,
        features=_split(features),
        use=use,
        attributes=tuple((key, _split(values)) for key, values in attributes.items()),
        models=_split(models),
        title=title,
        label=label,
    )


# Book features follow "Readers praise its ...", so no leading article.
_BOOK_FEATURES = (
    "gripping plot|richly drawn characters|lyrical, assured prose|twists you won't see coming|"
    "unforgettable ending|vivid sense of place|sharp, witty dialogue"
)
_BOOK_ATTRS = {
    "format": "Paperback|Hardcover|Large Print",
    "pages": "208|256|288|320|352|384|416|480",
    "language": "English",
}
_PUBLISHERS = "Penguin Books|HarperCollins|Vintage|Simon & Schuster|Macmillan|Hachette|Knopf"
_COLORS = "Black|White|Silver|Navy Blue|Graphite|Red|Sage Green"

# The vocabulary table is laid out by hand: formatted, every argument would take a line.
# fmt: off
LEAVES: tuple[_Leaf, ...] = (
    # Electronics
    _leaf("Electronics > Phones > Smartphones", price=(149, 1299),
          brands="Samsung|Apple|Google|Motorola|OnePlus|Nokia|Xiaomi",
          nouns="Smartphone|5G Smartphone|Camera Phone",
          adjectives="Unlocked|Dual-SIM|Ultra-Slim|Rugged|Flagship",
          features="a 6.5-inch OLED display|all-day battery life|a triple-lens camera system|"
                   "5G connectivity|fast wireless charging|an IP68 water-resistant design",
          use="for staying connected at work and on the go",
          models="S##|A##|X#|G##|Neo #",
          attributes={"storage": "64GB|128GB|256GB|512GB",
                      "color": "Midnight Black|Silver|Ocean Blue|Graphite|Rose Gold",
                      "screen_size": "6.1 in|6.4 in|6.7 in"}),
    _leaf("Electronics > Phones > Phone Cases", price=(8, 59),
          brands="OtterBox|Spigen|Speck|Casetify|ZAGG|Belkin",
          nouns="Phone Case|Case for iPhone 15|Case for Galaxy S24|Folio Case",
          adjectives="Slim|Rugged|Clear|Shockproof|Leather|MagSafe Compatible",
          features="raised edges that protect the screen and camera|"
                   "military-grade drop protection|a grippy, non-slip finish|"
                   "precise cutouts for every port|wireless charging compatibility",
          use="for everyday protection",
          attributes={"color": "Black|Clear|Navy|Sage Green|Lavender|Red",
                      "material": "Silicone|Polycarbonate|TPU|Leather"}),
    _leaf("Electronics > Phones > Chargers & Cables", price=(9, 89),
          brands="Anker|Belkin|Ugreen|Mophie|Aukey|Samsung",
          nouns="USB-C Charger|Wall Charger|Charging Cable|Power Bank|Wireless Charging Pad",
          adjectives="Fast|Compact|Braided|Dual-Port|GaN|Travel",
          features="fast charging for phones and laptops|a foldable plug|"
                   "a tangle-free braided cable|overheat and surge protection|"
                   "a slim, pocketable design",
          use="for home, office and travel", models="PD-#0|A2##|P#",
          attributes={"wattage": "20 W|30 W|45 W|65 W|100 W", "color": "Black|White",
                      "length": "3 ft|6 ft|10 ft"}),
    _leaf("Electronics > Audio > Headphones", price=(25, 449),
          brands="Sony|Bose|Sennheiser|Beats|JBL|Audio-Technica|Skullcandy",
          nouns="Headphones|Over-Ear Headphones|On-Ear Headphones|Studio Headphones",
          adjectives="Wireless Noise Cancelling|Wireless|Bluetooth|Foldable|Lightweight",
          features="active noise cancelling|up to 30 hours of battery life|"
                   "plush memory-foam ear cushions|a built-in microphone for hands-free calls|"
                   "rich, detailed sound with deep bass|quick charging",
          use="for commuting, travel and the office",
          models="WH-#000|QC##|HD #00|M#0x|Q#0",
          attributes={"color": "Black|Silver|Midnight Blue|White|Sand",
                      "connectivity": "Bluetooth 5.3|Bluetooth 5.0|Wired 3.5 mm",
                      "battery_life": "20 hours|30 hours|40 hours|60 hours"}),
    _leaf("Electronics > Audio > Earbuds", price=(15, 279),
          brands="Apple|Samsung|Jabra|Sony|Anker|Beats|JBL",
          nouns="Earbuds|True Wireless Earbuds|In-Ear Headphones|Sport Earbuds",
          adjectives="Wireless|Noise Cancelling|Waterproof|Compact|Bluetooth",
          features="a pocket-sized charging case|secure-fit ear tips|intuitive touch controls|"
                   "active noise cancelling|sweat and water resistance",
          use="for workouts, commutes and calls", models="Buds #|E#0|TW-#0|Air #",
          attributes={"color": "Black|White|Graphite|Mint",
                      "battery_life": "6 hours|8 hours|10 hours",
                      "water_resistance": "IPX4|IPX5|IP55|IP57"}),
    _leaf("Electronics > Audio > Bluetooth Speakers", price=(19, 449),
          brands="JBL|Bose|Sony|Anker|Ultimate Ears|Marshall|Bang & Olufsen",
          nouns="Bluetooth Speaker|Portable Speaker|Smart Speaker|Party Speaker",
          adjectives="Waterproof|Portable|Rugged|Compact|Wireless",
          features="360-degree sound|a waterproof, dustproof build|up to 20 hours of playtime|"
                   "a built-in speakerphone|stereo pairing with a second speaker",
          use="for the beach, the backyard and the road",
          models="Go #|XB##|Mini #|S#0",
          attributes={"color": "Black|Blue|Red|Teal|Gray", "water_resistance": "IPX7|IP67",
                      "battery_life": "12 hours|20 hours|24 hours"}),
    _leaf("Electronics > Computers > Laptops", price=(279, 2599),
          brands="Dell|Lenovo|HP|Apple|Asus|Acer|Microsoft",
          nouns="Laptop|Notebook|2-in-1 Laptop|Gaming Laptop",
          adjectives="Thin and Light|Touchscreen|Business|Everyday|Convertible",
          features="a vivid full-HD display|a comfortable backlit keyboard|all-day battery life|"
                   "Wi-Fi 6 connectivity|a fast solid-state drive|a fingerprint reader",
          use="for work, school and streaming",
          models="Pro 1#|Air 1#|X#|Slim #|Book #",
          attributes={"memory": "8GB RAM|16GB RAM|32GB RAM",
                      "storage": "256GB SSD|512GB SSD|1TB SSD",
                      "screen_size": "13.3 in|14 in|15.6 in|16 in",
                      "processor": "Intel Core i5|Intel Core i7|AMD Ryzen 5|AMD Ryzen 7"}),
    _leaf("Electronics > Computers > Monitors", price=(89, 1099),
          brands="Dell|LG|Samsung|Asus|BenQ|Acer|HP",
          nouns="Monitor|Computer Monitor|Gaming Monitor|Curved Monitor",
          adjectives="4K UHD|Full HD|Ultrawide|IPS|Frameless",
          features="a height-adjustable stand|thin bezels for multi-monitor setups|"
                   "a flicker-free panel|HDMI and DisplayPort inputs|"
                   "a fast refresh rate for smooth motion",
          use="for home offices and gaming setups", models="U2#2#|##GN#0|VG2#9|GW2#80",
          attributes={"screen_size": "24 in|27 in|32 in|34 in",
                      "refresh_rate": "60 Hz|75 Hz|144 Hz|165 Hz",
                      "resolution": "1920 x 1080|2560 x 1440|3840 x 2160"}),
    _leaf("Electronics > Computers > Keyboards & Mice", price=(12, 199),
          brands="Logitech|Razer|Microsoft|Corsair|Keychron|SteelSeries",
          nouns="Wireless Mouse|Mechanical Keyboard|Keyboard and Mouse Combo|Ergonomic Mouse|"
                "Gaming Mouse",
          adjectives="Wireless|RGB|Ergonomic|Silent|Low-Profile",
          features="a precise optical sensor|quiet, tactile keys|multi-device Bluetooth pairing|"
                   "a rechargeable battery that lasts for months|programmable buttons",
          use="for long work sessions and gaming", models="MX ###|K#|G###|M###",
          attributes={"color": "Black|White|Graphite|Pink",
                      "connectivity": "Bluetooth|2.4 GHz Wireless|USB Wired"}),
    _leaf("Electronics > Wearables > Smart Watches", price=(49, 799),
          brands="Apple|Samsung|Garmin|Fitbit|Amazfit|Fossil|Google",
          nouns="Smart Watch|GPS Smart Watch|Fitness Smart Watch",
          adjectives="Waterproof|Sport|Classic|Rugged|Slim",
          features="heart-rate and sleep tracking|built-in GPS|an always-on AMOLED display|"
                   "contactless payments|up to 7 days of battery life",
          use="for fitness, notifications and everyday wear",
          models="Watch #|Active #|GT #|Sport #",
          attributes={"case_size": "40 mm|42 mm|44 mm|46 mm", "color": _COLORS,
                      "band_material": "Silicone|Nylon|Stainless Steel|Leather"}),
    _leaf("Electronics > Wearables > Fitness Trackers", price=(19, 199),
          brands="Fitbit|Garmin|Xiaomi|Amazfit|Whoop|Polar",
          nouns="Fitness Tracker|Activity Tracker|Heart Rate Band",
          adjectives="Slim|Waterproof|Sport|Everyday",
          features="24/7 heart-rate monitoring|step, distance and calorie tracking|sleep scores|"
                   "swim-proof water resistance|a week of battery life",
          use="for building healthier habits", models="Band #|Fit #|Pulse #",
          attributes={"color": _COLORS, "band_size": "S|M|L"}),
    _leaf("Electronics > TV & Video > Televisions", price=(149, 2999),
          brands="Samsung|LG|Sony|TCL|Hisense|Vizio|Panasonic",
          nouns="Smart TV|LED TV|OLED TV|QLED TV",
          adjectives="4K UHD|8K|HDR|Class",
          features="a 4K HDR picture with vivid color|built-in streaming apps|voice control|"
                   "a low-latency game mode|Dolby Atmos sound",
          use="for movie nights and game days", models="Q##|C#|X##K|#-Series|U#",
          attributes={"screen_size": "43 in|50 in|55 in|65 in|75 in|85 in",
                      "refresh_rate": "60 Hz|120 Hz"}),
    _leaf("Electronics > TV & Video > Streaming Devices", price=(24, 199),
          brands="Roku|Amazon|Google|Apple|Nvidia",
          nouns="Streaming Stick|Streaming Media Player|Streaming Box",
          adjectives="4K|HD|Compact|Wi-Fi 6",
          features="thousands of free and paid channels|a voice remote|4K HDR streaming|"
                   "fast Wi-Fi|simple setup",
          use="for cutting the cord", models="Ultra|Stick 4K|Max|Express|Plus",
          attributes={"resolution": "HD|4K HDR|4K Dolby Vision"}),
    # Home & Kitchen
    _leaf("Home & Kitchen > Kitchen Appliances > Coffee Makers", price=(25, 799),
          brands="Keurig|Cuisinart|Breville|De'Longhi|Mr. Coffee|Hamilton Beach|Nespresso",
          nouns="Coffee Maker|Drip Coffee Maker|Espresso Machine|Single-Serve Coffee Maker",
          adjectives="Programmable|12-Cup|Compact|Stainless Steel|Thermal",
          features="a programmable 24-hour brew timer|"
                   "a thermal carafe that keeps coffee hot for hours|a built-in burr grinder|"
                   "a removable water reservoir|brew-strength control|"
                   "a milk frother for lattes and cappuccinos",
          use="for busy mornings and weekend brunches", models="DCC-#200|K-##|BES#70|EC#85|CM##00",
          attributes={"capacity": "4 cups|10 cups|12 cups|14 cups",
                      "color": "Black|Stainless Steel|Red|White",
                      "wattage": "900 W|1100 W|1450 W"}),
    _leaf("Home & Kitchen > Kitchen Appliances > Blenders", price=(19, 599),
          brands="Vitamix|Ninja|Blendtec|Oster|NutriBullet|KitchenAid",
          nouns="Blender|Countertop Blender|Personal Blender|Immersion Blender",
          adjectives="High-Speed|Professional|Compact|Variable-Speed",
          features="hardened stainless-steel blades|preset programs for smoothies and soups|"
                   "a self-cleaning cycle|a BPA-free pitcher|enough power to crush ice",
          use="for smoothies, soups and sauces", models="E3##|BL###|Pro ###|A##00",
          attributes={"capacity": "24 oz|48 oz|64 oz|72 oz", "wattage": "600 W|1000 W|1500 W",
                      "color": _COLORS}),
    _leaf("Home & Kitchen > Kitchen Appliances > Stand Mixers", price=(39, 699),
          brands="KitchenAid|Cuisinart|Hamilton Beach|Kenwood|Smeg|Bosch",
          nouns="Stand Mixer|Tilt-Head Stand Mixer|Bowl-Lift Stand Mixer|Hand Mixer",
          adjectives="Artisan|Professional|Classic|Compact",
          features="10 speeds for everything from whipping to kneading|"
                   "a stainless-steel mixing bowl|a dough hook, flat beater and wire whip|"
                   "a pouring shield|planetary mixing action",
          use="for bread, cookies and cakes", models="SM-#0|M#0|Pro #00",
          attributes={"color": "Empire Red|Onyx Black|White|Silver|Pistachio",
                      "capacity": "3.5 qt|4.5 qt|5 qt|6 qt|7 qt",
                      "wattage": "275 W|325 W|500 W|1000 W"}),
    _leaf("Home & Kitchen > Kitchen Appliances > Air Fryers", price=(39, 299),
          brands="Ninja|Cosori|Instant Pot|Philips|Chefman|Gourmia",
          nouns="Air Fryer|Air Fryer Oven|Dual-Basket Air Fryer",
          adjectives="Digital|Compact|XL|Family-Size",
          features="crispy results with little or no oil|one-touch presets|"
                   "a dishwasher-safe basket|a viewing window|rapid preheating",
          use="for quick weeknight dinners", models="AF#01|XL-#|HD9##0",
          attributes={"capacity": "2 qt|4 qt|5.8 qt|8 qt|10 qt", "wattage": "1200 W|1500 W|1700 W",
                      "color": _COLORS}),
    _leaf("Home & Kitchen > Cookware > Frying Pans", price=(15, 249),
          brands="T-fal|Lodge|Calphalon|All-Clad|Le Creuset|OXO",
          nouns="Frying Pan|Skillet|Cast Iron Skillet|Wok",
          adjectives="Nonstick|Pre-Seasoned|Stainless Steel|Ceramic|Hard-Anodized",
          features="even heat distribution|an oven-safe design|a comfortable stay-cool handle|"
                   "a PFOA-free nonstick coating|compatibility with induction cooktops",
          use="for everyday cooking",
          attributes={"size": "8 in|10 in|12 in|14 in",
                      "material": "Cast Iron|Stainless Steel|Ceramic|Aluminum"}),
    _leaf("Home & Kitchen > Cookware > Knife Sets", price=(19, 499),
          brands="Wüsthof|Zwilling|Victorinox|Henckels|Cuisinart|Mercer",
          nouns="Knife Set|Chef's Knife|Knife Block Set|Santoku Knife",
          adjectives="Forged|Professional|German Steel|Japanese-Style",
          features="razor-sharp, precision-honed edges|full-tang construction|ergonomic handles|"
                   "a hardwood storage block|stain-resistant blades",
          use="for home cooks and serious chefs",
          attributes={"material": "High-Carbon Stainless Steel|Damascus Steel|Ceramic",
                      "blade_length": "5 in|6 in|8 in|10 in"}),
    _leaf("Home & Kitchen > Home Decor > Lamps", price=(15, 249),
          brands="Brightech|Globe Electric|Philips|Lumisource|Catalina|Tiffany Studio",
          nouns="Table Lamp|Desk Lamp|LED Desk Lamp|Floor Lamp",
          adjectives="Modern|Dimmable|Mid-Century|Adjustable|Farmhouse",
          features="a warm, glare-free light|a built-in USB charging port|touch dimming|"
                   "a weighted base|an adjustable arm",
          use="for living rooms, bedrooms and home offices",
          attributes={"color": "Brass|Matte Black|White|Brushed Nickel",
                      "material": "Metal|Ceramic|Wood|Glass", "wattage": "9 W|40 W|60 W"}),
    _leaf("Home & Kitchen > Home Decor > Throw Pillows", price=(8, 69),
          brands="Safavieh|Rizzy Home|Pillow Perfect|Utopia Bedding|Phantoscope|Miulee",
          nouns="Throw Pillow|Decorative Pillow Cover|Lumbar Pillow",
          adjectives="Velvet|Boho|Striped|Textured|Outdoor",
          features="a soft, plush feel|a hidden zipper|fade-resistant color|"
                   "a removable, washable cover",
          use="for sofas, beds and reading nooks",
          attributes={"color": "Mustard|Blush|Navy|Emerald|Cream|Charcoal",
                      "size": "18 x 18 in|20 x 20 in|12 x 20 in",
                      "material": "Velvet|Linen|Cotton|Faux Fur"}),
    _leaf("Home & Kitchen > Bedding", price=(19, 349),
          brands="Brooklinen|Parachute|Utopia Bedding|Mellanni|Boll & Branch|Pottery Barn",
          nouns="Sheet Set|Duvet Cover Set|Comforter Set|Pillowcase Set",
          adjectives="Breathable|Cooling|Luxury|Organic|Wrinkle-Resistant",
          features="breathable, long-staple cotton|deep pockets that fit thick mattresses|"
                   "a soft, cool-to-the-touch finish|OEKO-TEX certified fabric",
          use="for a better night's sleep",
          attributes={"size": "Twin|Full|Queen|King|California King",
                      "material": "Cotton Percale|Sateen|Microfiber|Linen|Bamboo",
                      "color": "White|Gray|Sage|Navy|Ivory"}),
    _leaf("Home & Kitchen > Vacuums & Floor Care", price=(49, 899),
          brands="Dyson|Shark|Bissell|iRobot|Hoover|Eufy",
          nouns="Cordless Vacuum|Robot Vacuum|Upright Vacuum|Handheld Vacuum",
          adjectives="Cordless|Bagless|Lightweight|Pet Hair|Self-Emptying",
          features="powerful suction on carpets and hard floors|"
                   "a HEPA filter that traps allergens|app-controlled cleaning schedules|"
                   "a tangle-free brush roll|up to 60 minutes of runtime",
          use="for homes with kids and pets", models="V##|NV#60|R#|S##",
          attributes={"color": "Purple|Gray|Black|Red", "runtime": "30 min|45 min|60 min|120 min"}),
    # Sports & Outdoors
    _leaf("Sports & Outdoors > Camping > Tents", price=(39, 699),
          brands="Coleman|The North Face|Marmot|REI Co-op|Big Agnes|Kelty",
          nouns="Tent|Camping Tent|Backpacking Tent|Dome Tent",
          adjectives="2-Person|4-Person|6-Person|Waterproof|Ultralight|Instant",
          features="a weatherproof rainfly|color-coded poles for quick setup|"
                   "mesh panels for airflow|a roomy vestibule for gear|a compact carry bag",
          use="for campsites, festivals and the backcountry",
          attributes={"capacity": "2 people|4 people|6 people|8 people",
                      "season": "3-season|4-season", "color": "Green|Orange|Gray|Blue"}),
    _leaf("Sports & Outdoors > Camping > Sleeping Bags", price=(24, 399),
          brands="Coleman|Marmot|Kelty|Teton Sports|NEMO|Therm-a-Rest",
          nouns="Sleeping Bag|Mummy Sleeping Bag|Rectangular Sleeping Bag",
          adjectives="Lightweight|Packable|Cold-Weather|Kids",
          features="a water-repellent shell|a draft collar and hood|a two-way zipper|"
                   "a stuff sack for compact storage",
          use="for camping and backpacking trips",
          attributes={"temperature_rating": "0°F|20°F|30°F|40°F", "fill": "Synthetic|Down",
                      "color": _COLORS}),
    _leaf("Sports & Outdoors > Fitness > Yoga Mats", price=(12, 139),
          brands="Manduka|Gaiam|Lululemon|Liforme|JadeYoga|Alo Yoga",
          nouns="Yoga Mat|Exercise Mat|Travel Yoga Mat",
          adjectives="Non-Slip|Extra Thick|Eco-Friendly|Lightweight",
          features="a grippy, non-slip surface|joint-friendly cushioning|a carrying strap|"
                   "alignment markings|a sweat-resistant finish",
          use="for yoga, pilates and home workouts",
          attributes={"thickness": "3 mm|5 mm|6 mm|8 mm", "color": "Purple|Black|Teal|Blush|Gray",
                      "material": "Natural Rubber|TPE|PVC|Cork"}),
    _leaf("Sports & Outdoors > Fitness > Dumbbells", price=(15, 549),
          brands="Bowflex|CAP Barbell|PowerBlock|Rogue|Yes4All|NordicTrack",
          nouns="Dumbbell|Adjustable Dumbbell|Dumbbell Set|Kettlebell",
          adjectives="Hex|Adjustable|Rubber-Coated|Neoprene",
          features="quick weight changes with a turn of the dial|a knurled, comfortable grip|"
                   "a floor-friendly coating|a space-saving storage tray",
          use="for strength training at home", models="ST-###|Pro-##",
          attributes={"weight": "5 lb|10 lb|25 lb|52.5 lb|90 lb",
                      "material": "Cast Iron|Neoprene|Rubber"}),
    _leaf("Sports & Outdoors > Running > Running Shoes", price=(45, 249),
          brands="Nike|Adidas|Brooks|Asics|New Balance|Hoka|Saucony",
          nouns="Running Shoes|Trail Running Shoes|Road Running Shoes",
          adjectives="Men's|Women's|Lightweight|Cushioned|Breathable",
          features="a responsive foam midsole|a breathable engineered-mesh upper|"
                   "a durable rubber outsole|a secure, locked-in heel|"
                   "reflective details for low light",
          use="for daily miles and race day",
          models="Glide ##|Swift #|Tempo ##|Cloud #|Stride ##",
          attributes={"color": "Black/White|Navy|Volt|Gray|Pink",
                      "size": "US 6|US 7|US 8|US 9|US 10|US 11|US 12", "width": "Regular|Wide"}),
    _leaf("Sports & Outdoors > Cycling > Bike Helmets", price=(25, 299),
          brands="Giro|Bell|Specialized|POC|Kask|Smith",
          nouns="Bike Helmet|Road Bike Helmet|Mountain Bike Helmet|Kids Bike Helmet",
          adjectives="MIPS|Lightweight|Ventilated|Aero",
          features="MIPS rotational-impact protection|a fit dial for a secure fit|"
                   "a removable visor|generous ventilation|a rear safety light",
          use="for commutes, trails and group rides",
          attributes={"color": _COLORS, "size": "S|M|L"}),
    _leaf("Sports & Outdoors > Water Bottles", price=(8, 54),
          brands="Hydro Flask|Yeti|CamelBak|Stanley|Nalgene|Contigo",
          nouns="Water Bottle|Insulated Water Bottle|Tumbler",
          adjectives="Insulated|Leakproof|Wide-Mouth|Stainless Steel",
          features="double-wall vacuum insulation|a leakproof lid|a dishwasher-safe design|"
                   "a sweat-free exterior",
          use="for the gym, the office and the trail",
          attributes={"capacity": "16 oz|24 oz|32 oz|40 oz",
                      "color": "Black|White|Pacific|Olive|Lilac",
                      "material": "Stainless Steel|Tritan Plastic"}),
    # Books  (a book's brand is its publisher)
    _leaf("Books > Fiction > Literary Fiction", price=(8, 32),
          brands=_PUBLISHERS,
          nouns="Harbor|Orchard|Lighthouse|River|Garden|Winter|Island|Summer|Daughters|Letters",
          adjectives="Silent|Last|Hidden|Forgotten|Golden|Distant|Painted|Secret",
          features=_BOOK_FEATURES,
          use="for book clubs and quiet weekends", title="The {adj} {noun}: A Novel ({variant})",
          label="novel",
          attributes=_BOOK_ATTRS),
    _leaf("Books > Fiction > Mystery & Thriller", price=(8, 30),
          brands=_PUBLISHERS,
          nouns="Witness|Alibi|Stranger|Verdict|Guest|Night|Confession|Neighbor",
          adjectives="Silent|Last|Perfect|Quiet|Missing|Midnight|Fifth",
          features=_BOOK_FEATURES,
          use="for long flights and late nights", title="The {adj} {noun}: A Thriller ({variant})",
          label="thriller",
          attributes=_BOOK_ATTRS),
    _leaf("Books > Fiction > Science Fiction & Fantasy", price=(8, 34),
          brands=_PUBLISHERS,
          nouns="Empire|Crown|Void|Dragon|Tide|Machine|Kingdom|Stars",
          adjectives="Iron|Hollow|Glass|Shattered|Burning|Seventh|Starborn",
          features=_BOOK_FEATURES,
          use="for fans of epic adventures", title="The {adj} {noun} ({variant})", label="novel",
          attributes=_BOOK_ATTRS),
    _leaf("Books > Non-Fiction > Cookbooks", price=(12, 45),
          brands=_PUBLISHERS,
          nouns="Air Fryer|Sheet Pan|Slow Cooker|Baking|Weeknight|Vegetarian|Instant Pot|Grilling",
          adjectives="Complete|Everyday|Essential|Easy|Ultimate|Healthy",
          features="step-by-step recipes|full-color photography|weeknight-friendly meals|"
                   "clear nutrition notes|make-ahead tips",
          use="for home cooks of every level", title="The {adj} {noun} Cookbook ({variant})",
          label="cookbook",
          attributes=_BOOK_ATTRS),
    _leaf("Books > Non-Fiction > Biographies & Memoirs", price=(10, 36),
          brands=_PUBLISHERS,
          nouns="Light|Storm|Road Home|Open Sky|Long Way|Other Side",
          adjectives="Chasing the|Finding the|Beyond the|Into the|Walking the",
          features="candid storytelling|rare personal photographs|hard-won wisdom|warmth and humor",
          use="for readers who love true stories", title="{adj} {noun}: A Memoir ({variant})",
          label="memoir",
          attributes=_BOOK_ATTRS),
    _leaf("Books > Non-Fiction > Business & Self-Help", price=(10, 32),
          brands=_PUBLISHERS,
          nouns="Mindset|Leader|Habit|Advantage|Path|Team",
          adjectives="Resilient|Focused|Unstoppable|Courageous|Simple|Curious",
          features="practical, research-backed advice|memorable real-world stories|"
                   "exercises at the end of each chapter|clear, actionable steps",
          use="for anyone ready to grow at work and at home", title="The {adj} {noun} ({variant})",
          label="guide",
          attributes=_BOOK_ATTRS),
    _leaf("Books > Children's Books", price=(5, 22),
          brands="Scholastic|Candlewick|Chronicle Books|Little, Brown|Penguin Young Readers",
          nouns="Bear|Dragon|Fox|Penguin|Rabbit|Owl|Elephant",
          adjectives="Little|Very Busy|Sleepy|Brave|Hungry|Curious",
          features="bright, playful illustrations|gentle rhyming story|"
                   "sturdy pages for little hands|sweet bedtime message",
          use="for bedtime and story time", title="The {adj} {noun} ({variant})",
          label="picture book",
          attributes={"format": "Board Book|Hardcover|Paperback",
                      "ages": "0-3 years|3-5 years|4-8 years", "language": "English"}),
    # Toys & Games
    _leaf("Toys & Games > Building Toys > Building Sets", price=(9, 399),
          brands="Lego|Mega Bloks|K'NEX|Playmobil|Magna-Tiles|Lincoln Logs",
          nouns="Building Set|Building Kit|Construction Set",
          adjectives="Space Station|Castle|Fire Station|Race Car|Dinosaur|Pirate Ship|Treehouse",
          features="step-by-step building instructions|minifigures to bring the story to life|"
                   "pieces compatible with other sets|hours of creative, screen-free play",
          use="for young builders and collectors", models="#####",
          attributes={"pieces": "150 pieces|350 pieces|750 pieces|1,500 pieces|3,000 pieces",
                      "ages": "4+|6+|8+|12+|18+"}),
    _leaf("Toys & Games > Board Games", price=(9, 89),
          brands="Hasbro|Ravensburger|Asmodee|Mattel|Days of Wonder|Z-Man Games",
          nouns="Board Game|Strategy Game|Party Game|Card Game",
          adjectives="Family|Cooperative|Classic|Travel|Deluxe",
          features="quick-to-learn rules|high-quality components|endless replay value|"
                   "games that play in under an hour",
          use="for family game night",
          attributes={"players": "2 players|2-4 players|2-6 players|3-8 players",
                      "ages": "8+|10+|12+|14+", "play_time": "15 min|30 min|60 min|90 min"}),
    _leaf("Toys & Games > Puzzles > Jigsaw Puzzles", price=(9, 49),
          brands="Ravensburger|Buffalo Games|Galison|Cobble Hill|White Mountain|Springbok",
          nouns="Jigsaw Puzzle|Puzzle",
          adjectives="Landscape|Vintage Map|Floral|Wildlife|Night Sky|Art Collection",
          features="precision-cut pieces that fit snugly|a glare-free linen finish|"
                   "a poster for reference|sturdy recycled board",
          use="for relaxing afternoons",
          attributes={"pieces": "300 pieces|500 pieces|1000 pieces|2000 pieces"}),
    _leaf("Toys & Games > Dolls & Action Figures > Action Figures", price=(7, 119),
          brands="Hasbro|Mattel|Funko|McFarlane Toys|Bandai|Jakks Pacific",
          nouns="Action Figure|Collectible Figure|Figure Set",
          adjectives="Deluxe|Poseable|Collector's Edition|Armored|Glow-in-the-Dark",
          features="more than 20 points of articulation|interchangeable accessories|"
                   "detailed, hand-painted sculpting|a display stand",
          use="for collectors and imaginative play",
          attributes={"height": "4 in|6 in|12 in", "ages": "4+|8+|14+"}),
    _leaf("Toys & Games > Dolls & Action Figures > Dolls", price=(9, 149),
          brands="Mattel|American Girl|Madame Alexander|Corolle|Melissa & Doug|Our Generation",
          nouns="Doll|Fashion Doll|Baby Doll|Doll Playset",
          adjectives="Deluxe|Soft-Body|Poseable|Classic",
          features="outfits that mix and match|soft, brushable hair|accessories for pretend play|"
                   "eyes that open and close",
          use="for imaginative play",
          attributes={"height": "12 in|14 in|18 in", "ages": "3+|4+|6+"}),
    _leaf("Toys & Games > Remote Control Toys", price=(24, 499),
          brands="Traxxas|Hot Wheels|Sphero|Holy Stone|Redcat|Losi",
          nouns="RC Car|Remote Control Truck|Mini Drone|RC Monster Truck",
          adjectives="High-Speed|Off-Road|Waterproof|Stunt",
          features="speeds of up to 30 mph|a rechargeable battery|all-terrain tires|"
                   "a responsive 2.4 GHz remote|a camera for live video",
          use="for backyard races and indoor fun", models="X-##|HS###",
          attributes={"scale": "1:10|1:16|1:24", "color": "Red|Blue|Green|Orange"}),
    # Beauty & Personal Care
    _leaf("Beauty & Personal Care > Skin Care > Moisturizers", price=(6, 89),
          brands="CeraVe|Neutrogena|Olay|La Roche-Posay|Clinique|Cetaphil|Aveeno",
          nouns="Face Moisturizer|Night Cream|Moisturizing Lotion|Gel Cream",
          adjectives="Hydrating|Oil-Free|Fragrance-Free|Daily|Anti-Aging",
          features="hyaluronic acid for lasting hydration|ceramides that restore the skin barrier|"
                   "a lightweight, non-greasy texture|a dermatologist-tested formula|"
                   "niacinamide to even skin tone",
          use="for a simple daily routine",
          attributes={"size": "1.7 oz|2.5 oz|8 oz|16 oz",
                      "skin_type": "Dry|Oily|Combination|Sensitive|All skin types"}),
    _leaf("Beauty & Personal Care > Skin Care > Sunscreen", price=(6, 44),
          brands="Neutrogena|Supergoop!|La Roche-Posay|Banana Boat|EltaMD|Coppertone",
          nouns="Sunscreen|Mineral Sunscreen|Sunscreen Lotion|Sunscreen Spray",
          adjectives="SPF 30|SPF 50|Broad Spectrum|Water-Resistant|Tinted",
          features="broad-spectrum UVA/UVB protection|80 minutes of water resistance|"
                   "a sheer finish with no white cast|a reef-friendly formula",
          use="for beach days and daily wear",
          attributes={"size": "1.7 oz|3 oz|5 oz|8 oz", "skin_type": "All skin types|Sensitive"}),
    _leaf("Beauty & Personal Care > Hair Care > Shampoo & Conditioner", price=(5, 59),
          brands="Pantene|Dove|L'Oréal Paris|Head & Shoulders|Olaplex|Redken|Aveda",
          nouns="Shampoo|Conditioner|Shampoo and Conditioner Set|Dry Shampoo",
          adjectives="Moisturizing|Volumizing|Sulfate-Free|Clarifying|Color-Safe",
          features="a sulfate-free formula|nourishing argan oil|frizz control|"
                   "a fresh, clean scent|strengthening bond repair",
          use="for healthy, shiny hair",
          attributes={"size": "8.5 oz|12 oz|25 oz|33.8 oz",
                      "hair_type": "All hair types|Curly|Fine|Color-Treated|Dry"}),
    _leaf("Beauty & Personal Care > Hair Care > Hair Dryers & Styling Tools", price=(19, 549),
          brands="Dyson|Revlon|Conair|Remington|BaBylissPRO|T3|Panasonic",
          nouns="Hair Dryer|Hair Straightener|Curling Iron|Hot Air Brush",
          adjectives="Ionic|Ceramic|Professional|Travel|Lightweight",
          features="ionic technology that fights frizz|multiple heat and speed settings|"
                   "a cool-shot button|fast heat-up|a concentrator and diffuser",
          use="for salon-style results at home", models="HD0#|RVDR5###|SF#",
          attributes={"color": "Black|Pink|Fuchsia|White|Copper",
                      "wattage": "1200 W|1600 W|1875 W|2000 W"}),
    _leaf("Beauty & Personal Care > Oral Care > Electric Toothbrushes", price=(19, 299),
          brands="Philips Sonicare|Oral-B|Waterpik|Quip|Colgate",
          nouns="Electric Toothbrush|Sonic Toothbrush|Water Flosser",
          adjectives="Rechargeable|Smart|Travel|Whitening",
          features="a built-in two-minute timer|pressure sensors that protect gums|"
                   "multiple cleaning modes|a travel case|weeks of battery life",
          use="for a dentist-clean feeling every day", models="#100|S#|WP-###",
          attributes={"color": "White|Black|Pink|Blue", "modes": "1 mode|3 modes|5 modes"}),
    _leaf("Beauty & Personal Care > Fragrance", price=(19, 179),
          brands="Calvin Klein|Hugo Boss|Versace|Davidoff|Jo Malone|Burberry|Dolce & Gabbana",
          nouns="Eau de Parfum|Eau de Toilette|Cologne|Body Mist",
          adjectives="Citrus|Midnight|Wild|Amber|Ocean|Velvet|Noir",
          features="bright top notes of bergamot|a warm base of amber and vanilla|"
                   "a long-lasting trail|an elegant glass bottle",
          use="for everyday wear and special evenings",
          attributes={"size": "1 oz|1.7 oz|3.4 oz",
                      "scent_family": "Citrus|Floral|Woody|Oriental|Fresh"}),
)
# fmt: on

_FIRST_NAMES = _split(
    "Amelia|Daniel|Priya|Marcus|Elena|Samuel|Hannah|Kenji|Olivia|Rafael|Grace|Tomas|Nadia|Owen|"
    "Leila|Victor|Clara|Isaac|Maya|Jonah"
)
_LAST_NAMES = _split(
    "Hart|Okafor|Lindqvist|Moreno|Chen|Whitaker|Novak|Sato|Bennett|Haddad|Ellison|Rivera|Kowalski|"
    "Fairchild|Mendel|Abernathy|Quinn|Castellano"
)
_SECOND_SENTENCES = (
    "Highlights include {f}.",
    "You also get {f}.",
    "Thoughtful extras include {f}.",
)
_CLOSING_SENTENCES = (
    "Ideal {use}.",
    "A dependable pick {use}.",
    "Backed by a {years}-year limited warranty.",
    "Ships in recyclable packaging.",
)


def _model(rng: random.Random, leaf: _Leaf) -> str:
    if not leaf.models:
        return ""
    pattern = rng.choice(leaf.models)
    return "".join(str(rng.randint(1, 9)) if ch == "#" else ch for ch in pattern)


def _price(rng: random.Random, leaf: _Leaf) -> Decimal:
    # Log-uniform within the leaf's range (cheap items are more common), then a retail
    # ending such as 24.99 or 24.49.
    low, high = leaf.price
    dollars = max(1, int(low * (high / low) ** rng.random()))
    cents = rng.choices(("0.99", "0.49", "0.00"), weights=(70, 15, 15))[0]
    if cents == "0.00":
        return Decimal(dollars).quantize(Decimal("0.01"))
    return Decimal(dollars - 1) + Decimal(cents)


def _rating(rng: random.Random) -> tuple[Decimal | None, int]:
    if rng.random() < UNRATED_SHARE:
        return None, 0
    # Beta(5, 1.6) skews toward 4–5 stars, like real storefronts; review counts have a long
    # tail (median about 15, a few in the thousands).
    stars = 1 + 4 * rng.betavariate(5, 1.6)
    reviews = max(1, min(50_000, int(rng.lognormvariate(3.0, 1.6))))
    return Decimal(str(round(stars, 1))), reviews


# Capitalised words that stay capitalised mid-sentence.
_PROPER_WORDS = frozenset({"Bluetooth", "Galaxy", "German", "Japanese-Style", "MagSafe"})
_CAPITALISED = re.compile(r"[A-Z][a-z']+(?:-[A-Za-z][a-z]*)*")


def _lower(phrase: str) -> str:
    # "Wireless Noise Cancelling" -> "wireless noise cancelling", but "USB-C", "4K UHD",
    # "iPhone" and brand-like words keep their case.
    return " ".join(
        w.lower() if _CAPITALISED.fullmatch(w) and w not in _PROPER_WORDS else w
        for w in phrase.split()
    )


def _description(
    rng: random.Random, leaf: _Leaf, brand: str, noun: str, adj: str, title: str, author: str
) -> str:
    f1, f2, f3 = rng.sample(leaf.features, 3)
    if leaf.label:
        book = title.rsplit(" (", 1)[0]  # without the "(Paperback)" format
        sentences = [
            f"{book} is a {leaf.label} by {author}, published by {brand}.",
            f"Readers praise its {f1}, {f2} and {f3}.",
        ]
        if rng.random() < 0.6:
            sentences.append(f"Perfect {leaf.use}.")
        return " ".join(sentences)
    # "These headphones feature ..." but "This blender features ...".
    plural = noun.endswith("s") and not noun.endswith("ss")
    this, s = ("These", "") if plural else ("This", "s")
    noun_l = _lower(noun)
    first = rng.choice(
        (
            f"{this} {_lower(adj)} {noun_l} from {brand} feature{s} {f1} and {f2}.",
            f"The {brand} {noun_l} combine{s} {f1} with {f2}.",
            f"{brand} designed {this.lower()} {noun_l} {leaf.use}, with {f1} and {f2}.",
        )
    )
    sentences = [first, rng.choice(_SECOND_SENTENCES).format(f=f3)]
    if rng.random() < 0.6:
        # Don't repeat the "for ..." phrase if the first sentence already used it.
        closings = [c for c in _CLOSING_SENTENCES if leaf.use not in first or "{use}" not in c]
        closing = rng.choice(closings)
        sentences.append(closing.format(use=leaf.use, years=rng.choice((1, 2, 3))))
    # An empty adjective leaves a double space behind.
    return " ".join(" ".join(sentences).split())


def _stock(rng: random.Random, ref: str) -> list[StockRecord]:
    if rng.random() < OUT_OF_STOCK_SHARE:
        quantities = [0] * len(DEMO_WAREHOUSES)
    else:
        quantities = [rng.randint(0, MAX_STOCK) for _ in DEMO_WAREHOUSES]
        if not any(quantities):  # keep "in stock" products actually in stock
            quantities[rng.randrange(len(quantities))] = rng.randint(1, MAX_STOCK)
    return [
        StockRecord(external_ref=ref, warehouse_code=code, quantity=qty)
        for (code, _), qty in zip(DEMO_WAREHOUSES, quantities, strict=True)
    ]


def _product(rng: random.Random, number: int) -> CatalogRecord:
    ref = f"demo-{number:06d}"
    leaf = rng.choice(LEAVES)
    brand = rng.choice(leaf.brands)
    noun = rng.choice(leaf.nouns)
    adj = rng.choice(leaf.adjectives)
    if adj.lower() in noun.lower():  # avoid "Wireless True Wireless Earbuds"
        adj = ""
    model = _model(rng, leaf)
    attributes = {key: rng.choice(values) for key, values in leaf.attributes}
    author = ""
    if leaf.label:
        author = f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}"
        attributes["author"] = author
    if model:
        attributes["model"] = model
    variant = attributes[leaf.attributes[0][0]]
    title = " ".join(
        leaf.title.format(brand=brand, model=model, adj=adj, noun=noun, variant=variant).split()
    )
    rating, reviews = _rating(rng)
    return CatalogRecord(
        external_ref=ref,
        title=title,
        description=_description(rng, leaf, brand, noun, adj, title, author),
        brand=brand,
        category_path=leaf.path,
        price=_price(rng, leaf),
        rating=rating,
        review_count=reviews,
        images=tuple(
            f"https://picsum.photos/seed/{ref}-{i}/600/600" for i in range(1, rng.randint(1, 3) + 1)
        ),
        attributes=attributes,
        seller=rng.choices([name for name, _ in SELLERS], weights=[w for _, w in SELLERS])[0],
    )


def _generate(n: int, rng: random.Random) -> Iterator[tuple[CatalogRecord, list[StockRecord]]]:
    for number in range(1, n + 1):
        record = _product(rng, number)
        yield record, _stock(rng, record.external_ref)


def generate_demo(n: int, seed: int = 42) -> Iterator[tuple[CatalogRecord, list[StockRecord]]]:
    """Yield ``n`` demo products (``demo-000001`` …) with stock in every demo warehouse.

    Deterministic for a given seed: all randomness comes from one ``random.Random(seed)``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    # Not a generator function itself, so a bad n fails here rather than on first next().
    return _generate(n, random.Random(seed))
