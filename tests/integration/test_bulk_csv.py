"""The bulk-grant CSV: what support staff upload is read into rows, or refused with a message
that says what to fix. Pure parsing: no database."""
import codecs
import hashlib
import random

import pytest

from wallet_web import bulk_csv, errors
from wallet_web.bulk_csv import Problem, Row
from wallet_web.limits import BALANCE_CEILING, BIGINT_MAX

HEADER = "user_id,asset,amount,reason"


def csv_file(*lines: str, header: str = HEADER, newline: str = "\r\n") -> bytes:
    return newline.join((header,) + lines).encode() + newline.encode()


def refusal(data: bytes) -> errors.InvalidUpload:
    with pytest.raises(errors.InvalidUpload) as refused:
        bulk_csv.parse(data)
    return refused.value


def only_problem(*lines: str, header: str = HEADER) -> Problem:
    parsed = bulk_csv.parse(csv_file(*lines, header=header))
    assert parsed.rows == () and len(parsed.problems) == 1
    return parsed.problems[0]


def grant_rows(count: int) -> bytes:
    users = range(1, count + 1)
    return csv_file(*(f"{user},GOLD,{user % 500 + 1},outage 2024-05-01" for user in users))


# ---------------------------------------------------------------- files that are read


def test_a_valid_file_gives_its_rows_with_spreadsheet_line_numbers():
    data = csv_file("1042,GOLD,250,outage compensation", "7,GEMS,5,", "0099,GOLD,1,goodwill")

    parsed = bulk_csv.parse(data)

    assert parsed.rows == (Row(2, "1042", "GOLD", 250, "outage compensation"),
                           Row(3, "7", "GEMS", 5, ""),
                           Row(4, "99", "GOLD", 1, "goodwill"))
    assert parsed.problems == ()
    assert parsed.user_column == "user_id"
    assert parsed.sha256 == hashlib.sha256(data).hexdigest()


def test_the_reason_column_is_optional_and_header_names_ignore_case_and_spaces():
    parsed = bulk_csv.parse(csv_file("12,GOLD,100", header=" User_ID , ASSET ,Amount "))

    assert parsed.user_column == "user_id"
    assert parsed.rows == (Row(2, "12", "GOLD", 100, ""),)


def test_columns_are_found_by_name_in_any_order():
    parsed = bulk_csv.parse(csv_file(" 12 ,7, GOLD ", header=" Amount ,User_ID, ASSET"))

    assert parsed.rows == (Row(2, "7", "GOLD", 12, ""),)


@pytest.mark.parametrize("column", ["external_id", "username"])
def test_a_player_can_be_named_by_external_id_or_username(column):
    parsed = bulk_csv.parse(csv_file("steam:7656,GOLD,10", "Alice.B,GOLD,10",
                                     header=f"{column},asset,amount"))

    assert parsed.user_column == column
    assert [row.user for row in parsed.rows] == ["steam:7656", "Alice.B"]


def test_semicolons_separate_the_columns_when_the_header_has_no_comma():
    parsed = bulk_csv.parse(csv_file("1042;GOLD;250;outage, then a retry",
                                     header="user_id;asset;amount;reason"))

    assert parsed.rows == (Row(2, "1042", "GOLD", 250, "outage, then a retry"),)


def test_a_utf8_byte_order_mark_is_fine():
    data = codecs.BOM_UTF8 + csv_file("1042,GOLD,250,café fermé")

    parsed = bulk_csv.parse(data)

    assert parsed.user_column == "user_id"
    assert parsed.rows == (Row(2, "1042", "GOLD", 250, "café fermé"),)
    assert parsed.sha256 == hashlib.sha256(data).hexdigest()  # of the bytes as uploaded


def test_quoted_values_may_hold_commas_and_quotes():
    parsed = bulk_csv.parse(csv_file('1042,GOLD,250,"lag, then a ""full"" outage"'))

    assert parsed.rows[0].reason == 'lag, then a "full" outage'


def test_blank_lines_are_skipped_but_counted_like_a_spreadsheet_counts_them():
    data = csv_file("", "1,GOLD,10,", "", "   ", ",,,", "2,GOLD,oops,", "", "3,GOLD,30,",
                    newline="\n")

    parsed = bulk_csv.parse(data)

    assert [(row.line, row.user) for row in parsed.rows] == [(3, "1"), (9, "3")]
    assert [problem.line for problem in parsed.problems] == [7]


def test_a_quoted_value_spanning_lines_is_one_line_of_the_spreadsheet():
    parsed = bulk_csv.parse(csv_file('1,GOLD,10,"two\nlines"', "2,GOLD,20,"))

    assert parsed.problems[0].line == 2 and "control character" in parsed.problems[0].message
    assert parsed.rows == (Row(3, "2", "GOLD", 20, ""),)


def test_old_mac_line_endings_are_read():
    parsed = bulk_csv.parse(csv_file("1,GOLD,10,", "2,GOLD,20,", newline="\r"))

    assert [row.line for row in parsed.rows] == [2, 3]


def test_a_file_of_exactly_max_rows_is_read():
    assert len(bulk_csv.parse(grant_rows(bulk_csv.MAX_ROWS)).rows) == bulk_csv.MAX_ROWS


# ---------------------------------------------------------------- files refused whole


def test_an_empty_file_is_refused():
    assert "empty" in refusal(b"").message


def test_a_file_larger_than_the_limit_is_refused_before_it_is_read():
    data = csv_file() + b"1,GOLD,1,\r\n" * (bulk_csv.MAX_BYTES // 11 + 1)

    refused = refusal(data)

    assert "larger than 8 MB" in refused.message and "split it" in refused.message
    assert refused.details["max_bytes"] == bulk_csv.MAX_BYTES


def test_ten_megabytes_of_random_bytes_are_refused():
    assert "larger than" in refusal(random.Random(1).randbytes(10 * 2**20)).message


def test_random_bytes_within_the_limit_are_refused_as_not_text():
    assert "CSV UTF-8" in refusal(random.Random(2).randbytes(2**20)).message


def test_a_file_that_is_not_utf8_says_where_and_how_to_save_it():
    data = csv_file("1,GOLD,10,ok", "2,GOLD,10,café").decode().encode("cp1252")

    refused = refusal(data)

    assert "not UTF-8" in refused.message and "line 3" in refused.message
    assert "CSV UTF-8" in refused.message and refused.details["line"] == 3


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_utf16_file_is_named_so_with_or_without_a_byte_order_mark(encoding):
    refused = refusal(csv_file("1,GOLD,10,").decode().encode(encoding))

    assert "UTF-16" in refused.message and "CSV UTF-8" in refused.message


def test_a_nul_byte_is_refused_with_its_line():
    refused = refusal(csv_file("1,GOLD,10,", "2,GOLD,10,a\x00b"))

    assert "line 3" in refused.message and "NUL" in refused.message


@pytest.mark.parametrize("signature", [b"PK\x03\x04", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"])
def test_an_excel_workbook_is_refused_with_the_way_to_export_it(signature):
    refused = refusal(signature + bytes(range(256)) * 4)

    assert "Excel workbook" in refused.message and "export it as CSV" in refused.message


@pytest.mark.parametrize("data", [b"\r\n\r\n", codecs.BOM_UTF8, b"  \n"])
def test_a_file_without_a_header_is_refused(data):
    assert "no header line" in refusal(data).message


def test_a_header_that_is_data_is_refused_with_the_expected_columns():
    refused = refusal(b"1042,GOLD,250\r\n7,GOLD,5\r\n")

    assert "first line must name the columns" in refused.message
    assert "user_id, external_id or username" in refused.message and "'1042'" in refused.message


@pytest.mark.parametrize("header, told", [
    ("asset,amount,reason", "add one of user_id, external_id or username"),
    ("user_id,username,asset,amount", "one column only, the file has user_id and username"),
    ("user_id,amount,reason", "the column asset is missing"),
    ("user_id,asset,reason", "the column amount is missing"),
    ("user_id,asset,amount,comment", "unknown column 'comment': the columns are one of user_id"),
    ("user_id,asset,amount,", "a column without a name"),
    ("user_id,asset,amount,Asset", "the column asset appears twice"),
    ("user_id\tasset\tamount", "must name the columns, separated by commas"),
])
def test_a_header_without_exactly_the_required_columns_is_refused(header, told):
    refused = refusal(csv_file("1,GOLD,10", header=header))

    assert told in refused.message and refused.details["line"] == 1


def test_more_than_max_rows_is_refused():
    refused = refusal(grant_rows(bulk_csv.MAX_ROWS + 1))

    assert "more than 100,000 rows" in refused.message and "split it" in refused.message


def test_a_header_without_rows_is_refused():
    assert "no rows" in refusal(csv_file("", ",,,")).message


def test_an_unclosed_quote_is_refused_at_the_line_where_it_opens():
    refused = refusal(csv_file("1,GOLD,10,fine", "", '2,GOLD,10,"never closed', "3,GOLD,10,"))

    assert "line 4" in refused.message and "never closed" in refused.message


def test_text_after_a_closing_quote_is_refused_with_how_to_write_a_quote():
    refused = refusal(csv_file('1,GOLD,10,"say "hi" twice"'))

    assert "line 2" in refused.message and 'as two: ""' in refused.message


# ---------------------------------------------------------------- rows refused, the rest read


def test_a_row_with_the_wrong_number_of_values_is_a_problem_not_a_crash():
    parsed = bulk_csv.parse(csv_file("1,GOLD,10,lag, then outage", "2,GOLD", "3,GOLD,30,"))

    assert [row.user for row in parsed.rows] == ["3"]
    assert [problem.line for problem in parsed.problems] == [2, 3]
    assert "5 values but the header names 4" in parsed.problems[0].message
    assert "double quotes" in parsed.problems[0].message


@pytest.mark.parametrize("column", ["user_id", "username"])
def test_an_empty_player_is_a_problem(column):
    problem = only_problem(" ,GOLD,10", header=f"{column},asset,amount")

    assert problem == Problem(2, f"{column} is empty: say which player gets the credits")


@pytest.mark.parametrize("user", ["abc", "0", "12a", "1.0", "1 2", "١٢", "²", str(2**63)])
def test_a_user_id_must_be_a_positive_bigint_in_ascii_digits(user):
    problem = only_problem(f"{user},GOLD,10,")

    assert "user_id must be a whole number from 1 to 9223372036854775807" in problem.message
    assert f"(not '{user}')" in problem.message


def test_a_user_id_is_given_as_the_number_it_is():
    assert bulk_csv.parse(csv_file("000042,GOLD,10,")).rows[0].user == "42"


def test_the_largest_user_id_is_read():
    assert bulk_csv.parse(csv_file(f"{BIGINT_MAX},GOLD,10,")).rows[0].user == str(BIGINT_MAX)


@pytest.mark.parametrize("amount", ["12.5", "1,000", "1 000", "1\u00a0000", "1e3", "+5", "-5",
                                    "١٢", "five", "=1+1"])
def test_an_amount_must_be_a_whole_number_in_ascii_digits(amount):
    problem = only_problem(f'1,GOLD,"{amount}",')

    assert problem.message == ("amount must be a whole number of the asset's smallest unit, "
                               f"like 250 (not '{amount}')")


@pytest.mark.parametrize("amount, told", [
    ("", "amount is empty"),
    ("0", "amount is 0: a grant gives at least 1"),
    ("000", "amount is 0"),
    (str(BALANCE_CEILING + 1), "no wallet may hold more than 1,000,000,000,000,000"),
    (str(2**63), "amount is too large"),
    ("9" * 5000, "amount is too large"),
])
def test_an_amount_must_be_between_1_and_the_balance_ceiling(amount, told):
    assert told in only_problem(f"1,GOLD,{amount},").message


def test_the_largest_amount_is_read():
    assert bulk_csv.parse(csv_file(f"1,GOLD,{BALANCE_CEILING},")).rows[0].amount == BALANCE_CEILING


@pytest.mark.parametrize("asset, told", [
    ("gold", "asset codes are written in capitals: GOLD, not 'gold'"),
    ("GOLD COINS", "asset must be an asset code like GOLD"),
    ("1GOLD", "a capital letter, then at most 15"),
    ("A" * 17, "asset must be an asset code like GOLD"),
    ("", "asset is empty"),
])
def test_an_asset_must_be_a_code_as_written(asset, told):
    assert told in only_problem(f"1,{asset},10,").message


def test_spaces_around_values_are_trimmed():
    parsed = bulk_csv.parse(csv_file(" 1 , GOLD_2 , 10 , lag "))

    assert parsed.rows == (Row(2, "1", "GOLD_2", 10, "lag"),)


@pytest.mark.parametrize("cell", ["=HYPERLINK(\"http://x\")", "+SUM(A1)", "-2+3", "@cmd", "\tlag",
                                  "\rlag", " =1+1"])
@pytest.mark.parametrize("column", ["username", "asset", "reason"])
def test_a_cell_that_a_spreadsheet_would_run_as_a_formula_is_a_problem(cell, column):
    cells = {"username": "alice", "asset": "GOLD", "amount": "10", "reason": "lag", column: cell}
    quoted = ",".join('"' + value.replace('"', '""') + '"' for value in cells.values())

    problem = only_problem(quoted, header=",".join(cells))

    assert f"{column} looks like a spreadsheet formula" in problem.message
    assert "may not start with = + - @ or a tab" in problem.message


def test_a_user_id_that_looks_like_a_formula_is_called_one():
    assert "looks like a spreadsheet formula" in only_problem("=1+1,GOLD,10,").message


def test_a_reason_of_more_than_200_characters_is_a_problem():
    parsed = bulk_csv.parse(csv_file(f"1,GOLD,10,{'x' * 200}", f"2,GOLD,10,{'x' * 201}"))

    assert [row.line for row in parsed.rows] == [2]
    assert parsed.problems == (Problem(3, "reason is 201 characters long: at most 200"),)


@pytest.mark.parametrize("reason", ["bell\x07", "esc\x1b[31m", "tab\there", "c1\x85x",
                                    "abc\u202edef"])
def test_a_reason_holding_a_control_character_is_a_problem(reason):
    assert "reason holds a control character" in only_problem(f'1,GOLD,10,"{reason}"').message


def test_a_username_holding_a_control_character_is_a_problem():
    problem = only_problem("ali\x01ce,GOLD,10", header="username,asset,amount")

    assert "username holds a control character" in problem.message


def test_a_row_repeating_an_earlier_one_is_a_problem_that_names_it():
    parsed = bulk_csv.parse(csv_file("1,GOLD,10,lag", "2,GOLD,10,lag", "", "01, GOLD,10,lag ",
                                     "1,GOLD,10,second outage"))

    assert [row.line for row in parsed.rows] == [2, 3, 6]
    assert parsed.problems == (Problem(5, "repeats line 2 (same player, asset, amount and "
                                          "reason): delete one, or give each its own reason "
                                          "if both are meant"),)


def test_every_problem_of_a_row_is_reported_at_once():
    messages = [p.message for p in bulk_csv.parse(csv_file("x,gold,1.5,=cmd")).problems]

    assert [m.split(" ")[0] for m in messages] == ["user_id", "asset", "amount", "reason"]


def test_a_long_cell_is_shortened_and_its_control_characters_spelled_out_in_a_message():
    problem = only_problem(f'1,GOLD,"\x1b{"9" * 100}",')

    assert "(not '\\u001b999" in problem.message and "...')" in problem.message
    assert len(problem.message) < 150
