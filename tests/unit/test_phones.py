import pytest

from clinicbot.domain.phones import format_phone, mask_phone, normalize_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+7 (916) 123-45-67", "79161234567"),
        ("89161234567", "79161234567"),
        ("8 916 123 45 67", "79161234567"),
        ("8 (916) 123-45-67", "79161234567"),
        ("79161234567", "79161234567"),
        ("+79161234567", "79161234567"),
        ("9161234567", "79161234567"),
        ("916.123.45.67", "79161234567"),
        ("  +7 916 123 45 67\n", "79161234567"),
        ("8 800 555-35-35", "78005553535"),
        ("+44 20 7946 0958", "442079460958"),
        ("+44 (0) 20 7946 0958", "442079460958"),
        ("0044 20 7946 0958", "442079460958"),
        ("447700900123", "447700900123"),
        ("+1 (202) 555-0143", "12025550143"),
        ("+375 29 123-45-67", "375291234567"),
        ("+86 138 0013 8000", "8613800138000"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "hello",
        "+7 916 CALL-ME",
        "8916123456a",
        "12345",
        "123-45-67",
        "+7 916 123 45 6",  # +7 with 10 digits
        "+7 916 123 45 678",  # +7 with 12 digits
        "1234567890123456",  # longer than E.164
        "+44 (0) 20 7946 0958 ext. 12",
        "7+9161234567",
        "++79161234567",
        "+0 123 456 78 90",
    ],
)
def test_garbage_is_rejected(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_phone(raw)


def test_error_does_not_echo_the_number() -> None:
    with pytest.raises(ValueError) as info:
        normalize_phone("+7 916 123 45 6")
    assert "916" not in str(info.value)


def test_normalize_is_idempotent() -> None:
    for raw in ("+7 (916) 123-45-67", "+44 20 7946 0958"):
        once = normalize_phone(raw)
        assert normalize_phone(once) == once


def test_format_and_mask() -> None:
    assert format_phone("89161234567") == "+7 916 123-45-67"
    assert format_phone("+44 20 7946 0958") == "+442079460958"
    assert mask_phone("+7 916 123-45-67") == "+7 *** ***-**-67"
    assert mask_phone("442079460958") == "+**********58"
