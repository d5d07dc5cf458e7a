"""What the test modules, conftest and the dataset builders share.

Test modules import from here and never from one another or from conftest: conftest is loaded once,
by pytest, and holds only fixtures. ``pytest.ini`` puts the repository on ``sys.path``
(``pythonpath = .``), so ``tests.helpers`` imports the same way from any folder.
"""
