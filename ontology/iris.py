"""Every IRI the genealogy graph uses, in one place.

External IRIs (EMMO 1.0.2, BattINFO electrochemistry 0.36.0 / battery 0.20.1, CHAMEO, BVCO) were read from the copied
files in ../shared/ontologies and are listed with their skos:prefLabel in ../shared/research/ontologies.md section 5;
tests/ontology/test_external_iris.py proves each one exists there and is not owl:deprecated. EMMO-family IRIs are
UUID-style, so the readable names below are the only place a label appears; validate by IRI, never by label
(ontologies.md section 7, pitfall 4).
"""

from __future__ import annotations

from typing import Final

from rdflib import Namespace

EMMO: Final = Namespace("https://w3id.org/emmo#")
ECHEM: Final = Namespace("https://w3id.org/emmo/domain/electrochemistry#")
BATTERY: Final = Namespace("https://w3id.org/emmo/domain/battery#")
MFG: Final = Namespace("https://w3id.org/emmo/domain/manufacturing#")
BVCO: Final = Namespace("https://bvco.ontology.link/")

# The project vocabulary (ontology/vocab.ttl). A placeholder namespace under example.org until the project registers
# a w3id redirect; instance IRIs use a separate, configurable base (GraphConfig.base_iri).
PL: Final = Namespace("https://pilotline.example.org/vocab#")
DEFAULT_BASE_IRI: Final = "https://pilotline.example.org/id/"

# --- EMMO relations (emmo/perspectives/persistence.ttl, mereocausality.ttl, metrology.ttl, math.ttl) ---
EMMO_HAS_INPUT: Final = EMMO.EMMO_36e69413_8c59_4799_946c_10b05d266e22
EMMO_HAS_OUTPUT: Final = EMMO.EMMO_c4bace1d_4db0_4cd3_87e9_18122bae2840
EMMO_IS_OUTPUT_OF: Final = EMMO.EMMO_2bb50428_568d_46e8_b8bf_59a4c5656461
EMMO_HAS_PART: Final = EMMO.EMMO_17e27c22_37e1_468c_9dd7_95e137f73e7f
EMMO_IS_PART_OF: Final = EMMO.EMMO_a8bd7094_6b40_47af_b1f4_a69d81a3afbd
EMMO_PRECEDES: Final = EMMO.EMMO_499e24a5_5072_4c83_8625_fe3f96ae4a8d
EMMO_HAS_PARTICIPANT: Final = EMMO.EMMO_ae2d1a96_bfa1_409a_a7d2_03d69e8a125a
EMMO_HAS_AGENT: Final = EMMO.EMMO_cd24eb82_a11c_4a31_96ea_32f870c5580a
EMMO_HAS_PROPERTY: Final = EMMO.EMMO_e1097637_70d2_4895_973f_2396f04fa204
EMMO_HAS_MEASURED_PROPERTY: Final = EMMO.EMMO_fd689787_31b0_41cf_bf03_0d69af76469d
EMMO_HAS_NUMERICAL_PART: Final = EMMO.EMMO_8ef3cd6d_ae58_4a8d_9fc0_ad8f49015cd0
EMMO_HAS_NUMBER_VALUE: Final = EMMO.EMMO_faf79f53_749d_40b2_807c_d34244c192f4
EMMO_HAS_MEASUREMENT_UNIT: Final = EMMO.EMMO_bed1d005_b04e_4a90_94cf_02bc678a8569
EMMO_HAS_RESOURCE_IDENTIFIER: Final = EMMO.EMMO_a592c856_4103_43cf_8635_1982a1e5d5de
ECHEM_HAS_POSITIVE_ELECTRODE: Final = ECHEM.electrochemistry_8e9cf965_9f92_46e8_b678_b50410ce3616
ECHEM_HAS_NEGATIVE_ELECTRODE: Final = ECHEM.electrochemistry_5d299271_3f68_494f_ab96_3db9acdd3138

# --- EMMO classes used directly on instances ---
EMMO_REAL_DATA: Final = EMMO.EMMO_18d180e4_5e3e_42f7_820c_e08951223486
EMMO_MEASURED_PROPERTY: Final = EMMO.EMMO_873b0ab3_88e6_4054_b901_5531e01f14a4
EMMO_CONVENTIONAL_PROPERTY: Final = EMMO.EMMO_d8aa8e1f_b650_416d_88a0_5118de945456
EMMO_MODELLED_PROPERTY: Final = EMMO.EMMO_d0200cf1_e4f4_45ae_873f_b9359daea3cd
EMMO_QUANTITY: Final = EMMO.EMMO_0650c031_42b6_4f0a_b62d_d88f071da6bf
EMMO_DATASET: Final = EMMO.EMMO_194e367c_9783_4bf5_96d0_9ad597d48d9a
EMMO_DEW_POINT_TEMPERATURE: Final = EMMO.EMMO_a383e332_a271_463f_9e44_559604547220

# Units: EMMO 1.0.2 gives units readable local names (emmo/disciplines/units/*.ttl). Keys are the unit suffixes of
# the project's parameter/property names (`thickness_um`, `mass_loading_mg_cm2`, `line_load_N_mm`, ...), longest
# match wins. A suffix without an EMMO unit is kept as a plain unit code.
UNIT_SUFFIXES: Final[dict[str, str]] = {
    "mg_cm2": "MilliGramPerSquareCentiMetre",
    "g_cm3": "GramPerCubicCentiMetre",
    "cm3_h": "CubicCentiMetrePerHour",
    "cm3_min": "CubicCentiMetrePerMinute",
    "m_min": "MetrePerMinute",
    "mm_s": "MilliMetrePerSecond",
    "m_s": "MetrePerSecond",
    "N_mm": "NewtonPerMilliMetre",
    "N_m": "NewtonPerMetre",
    "mAh": "MilliAmpereHour",
    "Ah": "AmpereHour",
    "Wh": "Watthour",
    "rpm": "RevolutionPerMinute",
    "mOhm": "MilliOhm",
    "Ohm": "Ohm",
    "um": "MicroMetre",
    "mm": "MilliMetre",
    "cm": "CentiMetre",
    "m": "Metre",
    "mA": "MilliAmpere",
    "A": "Ampere",
    "V": "Volt",
    "W": "Watt",
    "C": "DegreeCelsius",
    "K": "Kelvin",
    "pct": "Percent",
    "g": "Gram",
    "mL": "MilliLitre",
    "Pa": "Pascal",
    "MPa": "MegaPascal",
    "mbar": "MilliBar",
    "bar": "Bar",
    "s": "Second",
    "min": "Minute",
    "h": "Hour",
}
UNIT_ONE: Final = EMMO.EMMO_5ebd5e01_0ed3_49a2_a30d_cd05cbe72978

# Statistic suffixes a summary property may carry after its unit (`mass_loading_mg_cm2_mean`, `dew_point_C_max`).
STATISTICS: Final = ("mean", "max", "min", "std", "median", "p95", "p05", "last", "first", "sum", "count")

# Quantity classes by property-name stem (first match wins; checked against the name with unit and statistic removed).
QUANTITY_BY_STEM: Final[tuple[tuple[str, str], ...]] = (
    # CalenderedCoatingThickness
    ("calendered_thickness", str(ECHEM.electrochemistry_f9e1c862_c510_4b11_9141_bc91045df817)),
    ("dry_film_thickness", str(ECHEM.electrochemistry_d10b3c03_8d4c_4aa2_882f_5d8f680a85ed)),  # DryCoatingThickness
    ("dry_thickness", str(ECHEM.electrochemistry_d10b3c03_8d4c_4aa2_882f_5d8f680a85ed)),
    ("wet_film_thickness", str(ECHEM.electrochemistry_3b938708_e7e4_4ac0_a959_9c04306302e7)),  # CoatingThickness
    ("thickness", str(ECHEM.electrochemistry_3b938708_e7e4_4ac0_a959_9c04306302e7)),
    ("active_mass_loading", str(ECHEM.electrochemistry_1eeb0e2a_229a_43f1_b197_348d475067ff)),  # ActiveMassLoading
    ("mass_loading", str(ECHEM.electrochemistry_c955c089_6ee1_41a2_95fc_d534c5cfd3d5)),  # MassLoading
    ("calendered_density", str(ECHEM.electrochemistry_520995f8_ec9c_4b3c_bb64_2cd691947379)),  # CalenderedDensity
    ("density", str(EMMO.EMMO_06448f64_8db6_4304_8b2c_e785dba82044)),  # Density
    ("porosity", str(EMMO.EMMO_3a6578ac_aee0_43b9_9bc6_1eb208c8c9a9)),  # Porosity
    ("dew_point", str(EMMO_DEW_POINT_TEMPERATURE)),  # DewPointTemperature
    ("relative_humidity", str(EMMO.EMMO_62273272_4cec_4168_bc7b_448f57feaba6)),  # RelativeHumidity
    ("discharge_capacity", str(ECHEM.electrochemistry_0141b5c2_9f15_46f4_82e6_92a104faa476)),  # DischargingCapacity
    ("charge_capacity", str(ECHEM.electrochemistry_10763eb0_dbc9_4d34_bd1a_7b8996590d45)),  # ChargingCapacity
    ("areal_capacity", str(ECHEM.electrochemistry_bcb33f7e_5573_4bc2_b636_4ea313a9dd3a)),  # AreicCapacity
    ("capacity", str(ECHEM.electrochemistry_791c1915_a791_4450_acd8_7f94764743b5)),  # Capacity
    ("initial_coulombic_efficiency", str(ECHEM.electrochemistry_469b9516_a96d_4aa2_b8e5_05ae982e2084)),
    ("coulombic_efficiency", str(ECHEM.electrochemistry_a5962e05_466d_46a4_8951_bea59d7326e5)),
    ("open_circuit_voltage", str(ECHEM.electrochemistry_9c657fdc_b9d3_4964_907c_f9a6e8c5f52b)),  # OpenCircuitVoltage
    ("ocv", str(ECHEM.electrochemistry_9c657fdc_b9d3_4964_907c_f9a6e8c5f52b)),
    ("voltage", str(ECHEM.electrochemistry_4ebe2ef1_eea8_4b10_822d_7a68215bd24d)),  # CellVoltage
    ("current", str(ECHEM.electrochemistry_637ee9c4_4b3f_4d3a_975b_c0572dfe53ce)),  # CellCurrent
    ("dc_internal_resistance", str(ECHEM.electrochemistry_7b3eb826_b968_493a_8396_cc3a5f09ecb3)),
    ("internal_resistance", str(ECHEM.electrochemistry_9bf40017_3f58_4030_ada7_cb37a3dfda2d)),
    ("temperature", str(EMMO.EMMO_66bc9029_f473_45ff_bab9_c3509ff37a22)),  # CelsiusTemperature
    ("length", str(EMMO.EMMO_cd2cd0de_e0cc_4ef1_b27e_2e88db027bac)),  # Length
    ("width", str(EMMO.EMMO_e4de48b1_dabb_4490_ac2b_040f926c64f0)),  # Width
    ("mass", str(EMMO.EMMO_ed4af7ae_63a2_497e_bb88_2309619ea405)),  # Mass
    ("pressure", str(EMMO.EMMO_50a44256_9dc5_434b_bad4_74a4d9a29989)),  # Pressure
    ("duration", str(EMMO.EMMO_0adabf6f_7404_44cb_9f65_32d83d8101a3)),  # Duration
)

# Project classes per trace-event `type` (docs/traceability.md) and per `step`.
ENTITY_CLASSES: Final[dict[str, str]] = {
    "RawMaterialLot": "RawMaterialLot",
    "SlurryBatch": "SlurryBatch",
    "CoatedRoll": "CoatedRoll",
    "RollSegment": "RollSegment",
    "CalenderedRoll": "CalenderedRoll",
    "SlitCoil": "SlitCoil",
    "ElectrodeSheet": "ElectrodeSheet",
    "CellStack": "CellStack",
    "Cell": "Cell",
    "FormationRun": "FormationRun",
}
STEP_CLASSES: Final[dict[str, str]] = {
    "Receiving": "Receiving",
    "Mixing": "Mixing",
    "Dispersion": "Mixing",
    "Coating": "Coating",
    "Drying": "Drying",
    "Calendering": "Calendering",
    "Slitting": "Slitting",
    "PostDrying": "PostDrying",
    "Assembly": "Assembly",
    "Cutting": "SheetCutting",
    "Stacking": "Stacking",
    "Packaging": "Packaging",
    "Filling": "Filling",
    "Formation": "Formation",
}
# The sub-step of Assembly a created entity implies (docs/traceability.md table: cutting, stacking, packaging).
ASSEMBLY_SUBSTEP_BY_OUTPUT: Final[dict[str, str]] = {
    "ElectrodeSheet": "SheetCutting",
    "CellStack": "Stacking",
    "Cell": "Packaging",
}
# Equipment classes by step (BattINFO manufacturing-equipment, battery-testing).
EQUIPMENT_CLASS_BY_STEP: Final[dict[str, str]] = {
    "Mixing": "Mixer",
    "Dispersion": "Mixer",
    "Coating": "Coater",
    "Drying": "Dryer",
    "PostDrying": "Dryer",
    "Calendering": "Calender",
    "Slitting": "Slitter",
    "Formation": "Cycler",
}

# Positive (cathode, `-C-` in the ID) vs negative (anode, `-A-`) electrode material, from the ID patterns of
# docs/traceability.md.
POLARITY_BY_CODE: Final[dict[str, str]] = {"C": "positive", "A": "negative"}
