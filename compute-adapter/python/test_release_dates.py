"""Tests for release_dates.py: which files of an index are a pinned release's.

Run with: cd compute-adapter/python && python3 -m unittest test_release_dates
"""

import unittest

import release_dates as r


class ReleaseDatesTest(unittest.TestCase):
    def test_versions_compare_as_pep_440_does_for_the_common_forms(self):
        self.assertEqual(r.canonical("1.5"), r.canonical("1.5.0"))
        self.assertEqual(r.canonical("V1.10.0"), "1.10")
        self.assertNotEqual(r.canonical("1.10"), r.canonical("1.1"))
        self.assertEqual(r.canonical("2.0.0rc1"), r.canonical("2rc1"))

    def test_file_names_say_whose_release_they_are(self):
        self.assertEqual(r.file_version("pandas-1.5.3-cp311-cp311-manylinux_2_17_x86_64.whl",
                                        "pandas"), "1.5.3")
        self.assertEqual(r.file_version("scikit_learn-1.3.2-cp311-cp311-linux.whl",
                                        "scikit-learn"), "1.3.2")
        self.assertEqual(r.file_version("scikit-learn-1.3.2.tar.gz", "scikit-learn"), "1.3.2")
        self.assertEqual(r.file_version("Django-4.2.zip", "django"), "4.2")
        # Another project's file is not this one's.
        self.assertIsNone(r.file_version("polars_runtime_32-1.38.1-py3-none-any.whl", "polars"))

    def test_an_unreachable_index_answers_nothing(self):
        import io
        import contextlib
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            r.main(["release_dates.py", "http://127.0.0.1:9/simple", "pandas==1.5.3"])
        self.assertEqual(out.getvalue(), "{}")


if __name__ == "__main__":
    unittest.main()
