"""Place names and codes: USPS state codes and ISO 3166 alpha-2 country codes, with their names.

Sources hold codes; NIEM's `LocationStateName`/`LocationCountryName` want names; queries may
spell either. One table serves all three.
"""
from __future__ import annotations

US_STATES = {
    "AL": "Alabama", "AK": "Alaska", "AZ": "Arizona", "AR": "Arkansas", "CA": "California",
    "CO": "Colorado", "CT": "Connecticut", "DE": "Delaware", "DC": "District of Columbia",
    "FL": "Florida", "GA": "Georgia", "HI": "Hawaii", "ID": "Idaho", "IL": "Illinois",
    "IN": "Indiana", "IA": "Iowa", "KS": "Kansas", "KY": "Kentucky", "LA": "Louisiana",
    "ME": "Maine", "MD": "Maryland", "MA": "Massachusetts", "MI": "Michigan", "MN": "Minnesota",
    "MS": "Mississippi", "MO": "Missouri", "MT": "Montana", "NE": "Nebraska", "NV": "Nevada",
    "NH": "New Hampshire", "NJ": "New Jersey", "NM": "New Mexico", "NY": "New York",
    "NC": "North Carolina", "ND": "North Dakota", "OH": "Ohio", "OK": "Oklahoma", "OR": "Oregon",
    "PA": "Pennsylvania", "RI": "Rhode Island", "SC": "South Carolina", "SD": "South Dakota",
    "TN": "Tennessee", "TX": "Texas", "UT": "Utah", "VT": "Vermont", "VA": "Virginia",
    "WA": "Washington", "WV": "West Virginia", "WI": "Wisconsin", "WY": "Wyoming",
    "PR": "Puerto Rico", "GU": "Guam", "VI": "U.S. Virgin Islands", "AS": "American Samoa",
    "MP": "Northern Mariana Islands",
}

COUNTRIES = {
    "US": "United States", "MX": "Mexico", "CA": "Canada", "GT": "Guatemala", "HN": "Honduras",
    "SV": "El Salvador", "NI": "Nicaragua", "CR": "Costa Rica", "PA": "Panama", "CU": "Cuba",
    "DO": "Dominican Republic", "HT": "Haiti", "JM": "Jamaica", "CO": "Colombia", "VE": "Venezuela",
    "EC": "Ecuador", "PE": "Peru", "BR": "Brazil", "AR": "Argentina", "CL": "Chile",
    "CN": "China", "IN": "India", "PH": "Philippines", "VN": "Vietnam", "KR": "South Korea",
    "AF": "Afghanistan", "IR": "Iran", "IQ": "Iraq", "SY": "Syria", "PK": "Pakistan",
    "RU": "Russia", "UA": "Ukraine", "GB": "United Kingdom", "DE": "Germany", "FR": "France",
    "NG": "Nigeria", "SO": "Somalia", "ET": "Ethiopia",
}

# Other spellings callers use for a country: ISO alpha-3 and long forms.
COUNTRY_ALIASES = {
    "USA": "US", "UNITED STATES OF AMERICA": "US", "MEX": "MX", "CAN": "CA", "GTM": "GT", "HND": "HN",
    "SLV": "SV", "CHN": "CN", "IND": "IN", "PHL": "PH", "CUB": "CU", "COL": "CO", "AFG": "AF", "IRN": "IR",
}

#: upper-case name (or alias, or the code itself) -> code
STATE_BY_NAME = {name.upper(): code for code, name in US_STATES.items()} | {"VIRGIN ISLANDS": "VI"}
COUNTRY_BY_NAME = {name.upper(): code for code, name in COUNTRIES.items()} | {c: c for c in COUNTRIES} | COUNTRY_ALIASES


def state_name(code: str) -> str:
    """`nc:LocationStateName` wants a name; unknown codes pass through unchanged."""
    return US_STATES.get(code.upper(), code)


def country_name(code: str) -> str:
    """`nc:LocationCountryName` wants a name; unknown ISO codes pass through unchanged."""
    return COUNTRIES.get(code.upper(), code)
