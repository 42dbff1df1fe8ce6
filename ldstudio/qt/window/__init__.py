"""The main window's parts, one concern each: layout, menus, jobs, models, images, the kept
queue and settings; `ldstudio.qt.main_window.MainWindow` puts them together. GUI thread."""
