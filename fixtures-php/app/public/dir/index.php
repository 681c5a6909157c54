<?php
echo "dir index\n";
