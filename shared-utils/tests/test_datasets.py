from shared_utils.datasets import DatasetFormatError, folder_listing


def test_folder_listing_says_what_is_there(tmp_path):
    assert folder_listing(tmp_path / "missing") == f"found nothing: {tmp_path / 'missing'} does not exist"
    assert folder_listing(tmp_path) == f"found nothing: {tmp_path} is empty"
    (tmp_path / "b.txt").write_text("")
    (tmp_path / "a").mkdir()
    assert folder_listing(tmp_path) == f"found in {tmp_path}: a/, b.txt"
    for i in range(5):
        (tmp_path / f"c{i}").write_text("")
    assert folder_listing(tmp_path, limit=3).endswith("a/, b.txt, c0 ... (4 more)")
    assert folder_listing(tmp_path / "b.txt").endswith("does not exist (it is a file)")


def test_dataset_format_error_is_a_value_error():
    assert issubclass(DatasetFormatError, ValueError)
