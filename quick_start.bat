@echo off
rem Pensieve: start an install that run_app.bat has already set up (no pip, no network).
rem Usage: quick_start.bat [pensieve up options: the serve options, e.g. --port 8080, and --ui-port 8501]
setlocal
cd /d "%~dp0"

if exist ".venv\Scripts\python.exe" goto :ready
echo error: Pensieve is not set up yet: run run_app.bat first, it creates .venv and installs everything. 1>&2
exit /b 1

:ready
rem Checks the set-up finished, creates .env and the folders if missing, and the model (instant when present).
".venv\Scripts\python.exe" scripts\bootstrap.py --no-install
if errorlevel 1 exit /b 1

rem Server and UI together, as in run_app.bat: Ctrl+C stops both.
".venv\Scripts\python.exe" -m pensieve up %*
exit /b %ERRORLEVEL%
