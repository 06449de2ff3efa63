"""The invoice CSV as advisors fill it from bills: separators, decimal commas, dates, and every bad row by line."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from inventory import Building, Energy, Inventory, InvoiceAccount, Organisation, Site
from streams.errors import DecodeError
from streams.invoices import (
    DEFAULT_KWH_PER_UNIT,
    Invoice,
    YearTotal,
    parse_invoices,
    read_invoice_file,
    yearly_totals,
)


@pytest.fixture
def inventory() -> Inventory:
    accounts = [
        InvoiceAccount(id="elec", energy=Energy.ELECTRICITY),
        InvoiceAccount(id="gaz", energy=Energy.NATURAL_GAS, conversion_kwh_per_unit=11.3),
        InvoiceAccount(id="gaz-sans-coef", energy=Energy.NATURAL_GAS),
        InvoiceAccount(id="eau", energy=Energy.WATER),
        InvoiceAccount(id="fioul", energy=Energy.FUEL_OIL, conversion_kwh_per_unit=9.97),
    ]
    building = Building(id="mairie", name="Mairie", usage="town_hall", floor_area_m2=1200, heated_area_m2=1100,
                        invoices=accounts)
    return Inventory(organisation=Organisation(name="Valmont", population=900, school_holiday_zone="C"),
                     sites=[Site(id="centre", name="Centre", buildings=[building])])


def test_a_spreadsheet_export_reads_with_commas_spaces_and_french_dates(inventory: Inventory) -> None:
    text = (
        "\ufeffAccount;Start;End;Consumption;Unit;Amount_EUR;Estimated;Reference\n"
        "elec;01/01/2023;31/01/2023;1 234,5;kWh;245,10;non;F-001\n"
        ";;;;;;;\n"  # the empty rows a spreadsheet leaves
        "elec;2023-02-01;2023-02-28;1,2;MWh;;oui;\n"
        "gaz;01/01/2023;28/02/2023;1.234,5;m³;1 500;;\n"
        "eau;01/01/2023;30/06/2023;45 000;L;90;R;\n"
        "fioul;01/01/2023;30/06/2023;2000;l;2 400;E;livraison\n"
    )
    parsed = parse_invoices(text, inventory)
    assert parsed.rejected == []
    by = {(i.account, i.start): i for i in parsed.invoices}
    first = by[("elec", date(2023, 1, 1))]
    assert (first.amount, first.amount_eur, first.estimated, first.reference, first.line) == (1234.5, 245.1, False, "F-001", 2)
    assert by[("elec", date(2023, 2, 1))].amount == 1200.0
    assert by[("elec", date(2023, 2, 1))].estimated is True
    assert by[("elec", date(2023, 2, 1))].amount_eur is None
    assert by[("gaz", date(2023, 1, 1))].amount == pytest.approx(1234.5 * 11.3)
    water = by[("eau", date(2023, 1, 1))]
    assert (water.amount, water.kwh, water.unit) == (45.0, None, "L")
    assert by[("fioul", date(2023, 1, 1))].amount == pytest.approx(2000 * 9.97)
    assert [i.line for i in parsed.invoices] == [2, 4, 5, 6, 7]


def test_comma_separated_files_take_dotted_decimals(inventory: Inventory) -> None:
    text = 'account,start,end,consumption,unit,amount_eur\nelec,2023-01-01,2023-01-31,1234.5,kWh,"245,10"\n'
    parsed = parse_invoices(text, inventory)
    assert parsed.invoices[0].amount == 1234.5
    assert parsed.invoices[0].amount_eur == 245.1
    # An unquoted decimal comma splits the row: said, not misread.
    parsed = parse_invoices("account,start,end,consumption,unit,amount_eur\nelec,2023-01-01,2023-01-31,1234,5,kWh,245\n",
                            inventory)
    assert [str(p) for p in parsed.rejected] == [
        "line 2: 7 cells where the header has 6: with ',' between columns, write decimals with a dot or quote the cell"]


def test_bad_rows_are_rejected_by_line(inventory: Inventory) -> None:
    text = (
        "account;start;end;consumption;unit;amount_eur;estimated\n"
        "chauffage;2023-01-01;2023-01-31;10;kWh;1;\n"
        "elec;2023-02-28;2023-02-01;10;kWh;1;\n"
        "elec;2023-01-01;2023-01-31;-10;kWh;1;\n"
        "elec;2023-01-01;2023-01-31;10;kVA;1;\n"
        "eau;2023-01-01;2023-01-31;10;kWh;1;\n"
        "elec;31/02/2023;2023-03-31;10;kWh;1;\n"
        "elec;2023-01-01;2023-01-31;dix;kWh;1;\n"
        "elec;2023-01-01;2023-01-31;nan;kWh;1;\n"
        "elec;2023-04-01;2023-04-30;10;kWh;1;peut-être\n"
        "elec;2023-05-01;2023-05-31;10;kWh;1;\n"
        "elec;2023-05-01;2023-05-30;10;kWh;1;\n"
        "elec;01/06/23;30/06/2023;10;kWh;1;\n"
    )
    parsed = parse_invoices(text, inventory)
    assert [str(p) for p in parsed.rejected] == [
        "line 2: unknown account 'chauffage': not an invoices id of a building of the inventory",
        "line 3: the period ends (2023-02-01) before it starts (2023-02-28)",
        "line 4: negative consumption -10 (a credit note: enter the corrected bill instead)",
        "line 5: unknown unit 'kVA': use one of L, MWh, kWh, m3, t",
        "line 6: unit kWh does not fit water (account eau): use m3, L",
        "line 7: dates '31/02/2023', '2023-03-31': write YYYY-MM-DD or DD/MM/YYYY",
        "line 8: consumption 'dix' is not a number",
        "line 9: consumption 'nan' is not a number",
        "line 10: estimated 'peut-être': write oui or non",
        "line 12: account elec already has an invoice starting 2023-05-01 (line 11)",
        "line 13: dates '01/06/23', '30/06/2023': write YYYY-MM-DD or DD/MM/YYYY",
    ]
    assert [i.line for i in parsed.invoices] == [11]


@pytest.mark.parametrize(("header", "message"), [
    ("account;start;end;consumption;amount_eur", "line 1: missing column(s) unit"),
    ("account;start;end;consumption;unit;amount_eur;tva", "line 1: unknown column(s) tva"),
    ("", "line 1: no header"),
])
def test_a_bad_header_refuses_the_file(inventory: Inventory, header: str, message: str) -> None:
    with pytest.raises(DecodeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_invoices(header + "\n", inventory)


def test_a_quote_never_closed_refuses_the_file_naming_the_line(inventory: Inventory, tmp_path: Path) -> None:
    # Hostile-input round: csv's field size limit gave a traceback in `econome import invoices`.
    path = tmp_path / "bills.csv"
    path.write_text('account;start;end;consumption;unit;amount_eur\nelec;2024-01-01;2024-01-31;"' + "1" * 140_000,
                    encoding="utf-8")
    with pytest.raises(DecodeError, match=r"bills\.csv: line 2: field larger than field limit .*never closed"):
        read_invoice_file(path, inventory)


def test_overlaps_gaps_and_a_default_coefficient_are_warned_by_line(inventory: Inventory, tmp_path: Path) -> None:
    text = (
        "account;start;end;consumption;unit;amount_eur;reference\n"
        "gaz-sans-coef;2023-03-01;2023-04-30;100;m3;80;relevé été\n"
        "gaz-sans-coef;2023-01-01;2023-02-28;100;m3;80;\n"  # unsorted: the order of the periods counts
        "gaz-sans-coef;2023-04-15;2023-06-30;100;m3;80;\n"
        "gaz-sans-coef;2023-08-01;2023-09-30;100;m3;80;\n"
    )
    # Saved by an old Excel: Windows-1252, not UTF-8.
    path = tmp_path / "factures.csv"
    path.write_bytes(text.encode("cp1252"))
    parsed = read_invoice_file(path, inventory)
    assert [str(p) for p in parsed.warnings] == [
        "account gaz-sans-coef: no conversion_kwh_per_unit in the inventory, 11.2 kWh per unit assumed for "
        "natural_gas (give the bills' coefficient)",
        "line 4: account gaz-sans-coef: overlaps line 2 on 16 day(s) (2023-04-15 to 2023-04-30): counted twice",
        "line 5: account gaz-sans-coef: 31 day(s) without invoice after line 4 (2023-07-01 to 2023-07-31)",
    ]
    assert parsed.invoices[0].amount == 100 * DEFAULT_KWH_PER_UNIT[Energy.NATURAL_GAS]
    assert parsed.invoices[0].reference == "relevé été"


def test_years_prorate_bills_by_day_and_are_complete_only_when_every_day_is_billed(inventory: Inventory) -> None:
    text = (
        "account;start;end;consumption;unit;amount_eur\n"
        "elec;2022-01-01;2022-11-30;3340;kWh;\n"
        "elec;2022-12-01;2023-01-31;620;kWh;\n"  # 31 days in each year
        "elec;2023-02-01;2023-12-31;3340;kWh;\n"
        "elec;2024-02-01;2024-12-31;1000;kWh;\n"  # January 2024 never billed
        "gaz;2023-06-01;2023-12-31;100;MWh;\n"  # gas supplied from June 2023: not missing before
    )
    years = yearly_totals(parse_invoices(text, inventory).invoices)["mairie"]
    elec = years[Energy.ELECTRICITY]
    assert elec[2022].amount == pytest.approx(3340 + 310)
    assert elec[2023].amount == pytest.approx(310 + 3340)
    assert (elec[2022].complete, elec[2023].complete) == (True, True)
    assert (elec[2024].missing_days, elec[2024].complete) == (31, False)
    assert years[Energy.NATURAL_GAS][2023].missing_days == 0
    assert set(years[Energy.NATURAL_GAS]) == {2023}


def test_a_change_of_contract_or_of_energy_within_a_year_leaves_it_complete() -> None:
    # Review 14-M2 #3: two accounts of one energy (a new supplier on 1 July), and fuel oil replaced by gas.
    accounts = [InvoiceAccount(id="elec-a", energy=Energy.ELECTRICITY),
                InvoiceAccount(id="elec-b", energy=Energy.ELECTRICITY),
                InvoiceAccount(id="fioul", energy=Energy.FUEL_OIL, conversion_kwh_per_unit=10),
                InvoiceAccount(id="gaz", energy=Energy.NATURAL_GAS, conversion_kwh_per_unit=11)]
    building = Building(id="ecole", name="École", usage="school", floor_area_m2=800, heated_area_m2=700,
                        invoices=accounts)
    inventory = Inventory(organisation=Organisation(name="Valmont", population=900, school_holiday_zone="C"),
                          sites=[Site(id="centre", name="Centre", buildings=[building])])
    text = ("account;start;end;consumption;unit;amount_eur\n"
            "elec-a;01/07/2014;31/12/2014;50000;kWh;\n"
            "elec-a;01/01/2015;30/06/2015;50000;kWh;\n"
            "elec-b;01/07/2015;31/12/2015;60000;kWh;\n"
            "elec-b;01/01/2016;31/12/2016;90000;kWh;\n"
            "fioul;01/07/2014;30/06/2015;3000;L;\n"
            "gaz;01/07/2015;31/12/2016;5000;m3;\n")
    years = yearly_totals(parse_invoices(text, inventory).invoices)["ecole"]
    assert years[Energy.ELECTRICITY][2015] == YearTotal(110000.0, 0)
    assert years[Energy.FUEL_OIL][2015].complete
    assert set(years[Energy.FUEL_OIL]) == {2014, 2015}
    assert years[Energy.NATURAL_GAS][2015].complete
    # The first year, billed from July by every energy, is not complete.
    assert (years[Energy.ELECTRICITY][2014].missing_days, years[Energy.FUEL_OIL][2014].missing_days) == (181, 181)
    # A gap in the new contract counts.
    text = text.replace("elec-b;01/07/2015", "elec-b;01/08/2015")
    assert yearly_totals(parse_invoices(text, inventory).invoices)["ecole"][Energy.ELECTRICITY][2015].missing_days == 31


def test_fuel_oil_and_pellets_without_a_coefficient_take_the_documented_defaults() -> None:
    accounts = [InvoiceAccount(id="fioul", energy=Energy.FUEL_OIL), InvoiceAccount(id="bois", energy=Energy.WOOD_PELLETS)]
    building = Building(id="ecole", name="École", usage="school", floor_area_m2=800, heated_area_m2=700,
                        invoices=accounts)
    inventory = Inventory(organisation=Organisation(name="Valmont", population=900, school_holiday_zone="C"),
                          sites=[Site(id="centre", name="Centre", buildings=[building])])
    parsed = parse_invoices("account;start;end;consumption;unit;amount_eur\n"
                            "fioul;2023-01-01;2023-06-30;2000;L;\n"
                            "bois;2023-01-01;2023-06-30;3,5;t;\n", inventory)
    assert [i.amount for i in parsed.invoices] == [2000 * 10.0, 3.5 * 4600.0]
    assert len(parsed.warnings) == 2


def test_dots_followed_by_three_digits_are_thousands_and_the_english_way_is_refused(inventory: Inventory) -> None:
    # Review 14-M2 #1: "120.000" was read as 120, "1,234.5" as 1.2345, "1.234.567" refused.
    text = (
        "account;start;end;consumption;unit;amount_eur\n"
        "elec;2023-01-01;2023-01-31;120.000;kWh;1.234,50\n"
        "elec;2023-02-01;2023-02-28;1.234.567;kWh;12.5\n"
        "elec;2023-03-01;2023-03-31;1,234.5;kWh;\n"
        "elec;2023-04-01;2023-04-30;1.23.4;kWh;\n"
        "elec;2023-05-01;2023-05-31;1,2,3;kWh;\n"
        "elec;2023-06-01;2023-06-30;12.5;kWh;2 000,5\n"
        "elec;2023-07-01;2023-07-31;0.500;kWh;\n"
    )
    parsed = parse_invoices(text, inventory)
    assert [(i.consumption, i.amount_eur) for i in parsed.invoices] == [
        (120000.0, 1234.5), (1234567.0, 12.5), (12.5, 2000.5)]
    assert [str(p) for p in parsed.rejected] == [
        "line 4: consumption '1,234.5' mixes the English way (comma for thousands, dot for decimals): "
        "write 1234,5 or 1 234,5",
        "line 5: consumption '1.23.4': dots as thousands separators take groups of 3 digits",
        "line 6: consumption '1,2,3' has several commas: write 1234,5 or 1 234,5",
        "line 8: consumption '0.500' is ambiguous (0.500: half or five hundred?): write 0,5 or 500",
    ]
    # With ',' between columns the dot is the decimal mark, as documented.
    parsed = parse_invoices("account,start,end,consumption,unit,amount_eur\nelec,2023-01-01,2023-01-31,120.000,kWh,\n",
                            inventory)
    assert parsed.invoices[0].consumption == 120.0


def test_trailing_separators_are_ignored(inventory: Inventory) -> None:
    # Review 14-M2 #8: a header "reference;" refused the file.
    text = ("account;start;end;consumption;unit;amount_eur;reference;\n"
            "elec;2023-01-01;2023-01-31;100;kWh;10;F1;\n"
            "elec;2023-02-01;2023-02-28;100;kWh;10;;;\n"
            "elec;2023-03-01;2023-03-31;100;kWh\n")
    parsed = parse_invoices(text, inventory)
    assert [i.reference for i in parsed.invoices] == ["F1", ""]
    assert [str(p) for p in parsed.rejected] == ["line 4: 5 cells where the header has 7"]


def test_a_bill_s_own_conversion_is_used_for_gas_in_m3(inventory: Inventory) -> None:
    # Review 14-M2 #12: the coefficient printed on each gas bill.
    text = ("account;start;end;consumption;unit;amount_eur;conversion\n"
            "gaz-sans-coef;2023-01-01;2023-01-31;100;m3;;11,42\n"
            "gaz;2023-02-01;2023-02-28;100;m3;;\n"
            "elec;2023-02-01;2023-02-28;100;kWh;;11\n"
            "gaz;2023-03-01;2023-03-31;100;m3;;0\n")
    parsed = parse_invoices(text, inventory)
    assert [i.amount for i in parsed.invoices] == pytest.approx([1142.0, 1130.0])
    assert [str(p) for p in parsed.rejected] == [
        "line 4: conversion given for a bill in kWh: it converts m3, L or t to kWh",
        "line 5: conversion 0 must be positive (kWh per m3, as printed on the bill)"]
    assert not any("gaz-sans-coef" in str(w) for w in parsed.warnings)


def test_stored_bills_are_named_by_period_number_and_file() -> None:
    # Review 14-M2 #2 #10: bills read from InfluxDB have no line; their overlaps name them.
    from streams.invoices import coverage_problems

    first = Invoice("elec", "mairie", Energy.ELECTRICITY, date(2023, 1, 1), date(2023, 1, 31), 10.0, "kWh", 10.0,
                    reference="F-001", source="factures-2023.csv")
    second = Invoice("elec", "mairie", Energy.ELECTRICITY, date(2023, 1, 20), date(2023, 2, 28), 10.0, "kWh", 10.0)
    third = Invoice("elec", "mairie", Energy.ELECTRICITY, date(2023, 4, 1), date(2023, 4, 30), 10.0, "kWh", 10.0)
    assert [str(p) for p in coverage_problems([first, second, third], gaps=False)] == [
        "account elec: the stored bill 2023-01-20 to 2023-02-28 overlaps the stored bill 2023-01-01 to 2023-01-31 "
        "(F-001, imported from factures-2023.csv) on 12 day(s) (2023-01-20 to 2023-01-31): counted twice"]
    assert len(coverage_problems([first, second, third])) == 2


def test_a_bill_in_year_1_or_9999_is_rejected_by_line(inventory: Inventory) -> None:
    # Hostile-input round: these were kept; the yearly totals then listed the 2.9 million days of the second
    # and, after 5 s, raised "year 10000 is out of range".
    text = ("account;start;end;consumption;unit;amount_eur\nelec;0001-01-01;2024-01-31;100;kWh;10\n"
            "elec;2024-01-01;9999-12-31;100;kWh;10\nelec;2024-02-01;2024-02-29;100;kWh;10\n")
    parsed = parse_invoices(text, inventory)
    assert [i.line for i in parsed.invoices] == [4]
    assert [str(r) for r in parsed.rejected] == [
        "line 2: the period 0001-01-01 .. 2024-01-31 is not within 1990-01-01 .. 2099-12-31",
        "line 3: the period 2024-01-01 .. 9999-12-31 is not within 1990-01-01 .. 2099-12-31"]


def test_a_bill_of_1e308_kwh_or_euros_is_rejected_by_line(inventory: Inventory) -> None:
    # Hostile-input round: 1e308 kWh was kept, and every yearly total, report and Grafana sum became 1e308 or inf.
    text = ("account;start;end;consumption;unit;amount_eur\nelec;2024-01-01;2024-01-31;1e308;kWh;10\n"
            "elec;2024-02-01;2024-02-29;100;kWh;1e308\nelec;2024-03-01;2024-03-31;74400000;kWh;10\n"
            "elec;2024-04-01;2024-04-30;100;kWh;10\n")
    parsed = parse_invoices(text, inventory)
    assert [i.line for i in parsed.invoices] == [4, 5]
    assert [str(r) for r in parsed.rejected] == [
        "line 2: consumption 1e+308 kWh (1e+308 kWh over 31 days) is not plausible for a building (above 2.4e+06 kWh a day)",
        "line 3: amount_eur 1e+308 over 29 days is not plausible for a building's bill (above 1e+06 € a day)"]
